"""index every sort key of the task list; keep task_counts right after TRUNCATE

With only the created_at indexes, sorting a user's 100,000 tasks by updated_at, due_date,
priority or title read and sorted all of them for each page (20 to 50 ms). With an index per
key, a page reads its rows in order and stops at the limit.

On PostgreSQL, TRUNCATE fires no row triggers: a statement trigger now empties task_counts
with it. Whoever writes to `tasks` with the triggers disabled (session_replication_role =
replica, ALTER TABLE ... DISABLE TRIGGER) must recount afterwards, in one statement:

    SELECT <schema>.recount_tasks();

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The exact expressions the list query orders by (task_service.models.priority_rank, and
# lower(title)): an expression index serves only a query that repeats it.
PRIORITY_RANK = (
    "(CASE WHEN (priority = 'low') THEN 1 WHEN (priority = 'medium') THEN 2 "
    "WHEN (priority = 'high') THEN 3 END)"
)
LOWER_TITLE = "lower(title)"

# Both run with the search_path of their creation (the service's schema), like count_tasks().
POSTGRES_FUNCTIONS = [
    """
CREATE FUNCTION forget_task_counts() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM task_counts;
    RETURN NULL;
END;
$$
""",
    """
CREATE FUNCTION recount_tasks() RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    -- Writers wait until the counts are rebuilt, so none is missed or counted twice.
    LOCK TABLE tasks IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM task_counts;
    INSERT INTO task_counts (user_id, total, completed)
    SELECT user_id, count(*), count(*) FILTER (WHERE completed) FROM tasks GROUP BY user_id;
END;
$$
""",
]
POSTGRES_TRUNCATE_TRIGGER = (
    "CREATE TRIGGER tasks_count_truncate AFTER TRUNCATE ON tasks "
    "FOR EACH STATEMENT EXECUTE FUNCTION forget_task_counts()"
)


def upgrade() -> None:
    op.create_index(
        op.f("ix_tasks_user_id_updated_at_id"), "tasks", ["user_id", "updated_at", "id"]
    )
    op.create_index(op.f("ix_tasks_user_id_due_date_id"), "tasks", ["user_id", "due_date", "id"])
    op.create_index(
        op.f("ix_tasks_user_id_priority_rank_id"),
        "tasks",
        ["user_id", sa.text(PRIORITY_RANK), "id"],
    )
    op.create_index(
        op.f("ix_tasks_user_id_lower_title_id"), "tasks", ["user_id", sa.text(LOWER_TITLE), "id"]
    )
    if op.get_bind().dialect.name == "postgresql":
        # Tasks without a due date come last in both directions. Read backwards, the index
        # above gives them first when descending; SQLite needs no second index for this.
        op.create_index(
            op.f("ix_tasks_user_id_due_date_desc_id"),
            "tasks",
            ["user_id", sa.text("due_date DESC NULLS LAST"), sa.text("id DESC")],
        )
        for function in POSTGRES_FUNCTIONS:
            op.execute(function)
        op.execute(POSTGRES_TRUNCATE_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER tasks_count_truncate ON tasks")
        op.execute("DROP FUNCTION recount_tasks()")
        op.execute("DROP FUNCTION forget_task_counts()")
        op.drop_index(op.f("ix_tasks_user_id_due_date_desc_id"), table_name="tasks")
    op.drop_index(op.f("ix_tasks_user_id_lower_title_id"), table_name="tasks")
    op.drop_index(op.f("ix_tasks_user_id_priority_rank_id"), table_name="tasks")
    op.drop_index(op.f("ix_tasks_user_id_due_date_id"), table_name="tasks")
    op.drop_index(op.f("ix_tasks_user_id_updated_at_id"), table_name="tasks")
