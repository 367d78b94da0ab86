"""count deleted tasks once per statement, locking the counts in key order

The row trigger of 0002 decremented `task_counts` once per deleted task, locking each
count row in the order the delete met the tasks. Deleting the completed tasks of several
priorities at once (`DELETE /api/{user_id}/tasks?status=completed`) then could lock
(user, high, true) after (user, medium, true) while a PUT moving a task between those rows
locked them the other way round (count_tasks() locks in key order): a deadlock, and a 500
for one of them. Deletes now run one statement-level trigger that locks the rows it changes
in key order, like every other writer, and subtracts each group's count once. Inserts keep
their row trigger, under a name of their own.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POSTGRES_FUNCTION = """
CREATE OR REPLACE FUNCTION count_deleted_tasks() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    -- In key order, as count_tasks() locks them: no writer waits for a row while holding
    -- one that comes after it, so no cycle of waits can form.
    PERFORM 1 FROM task_counts c
    WHERE (c.user_id, c.priority, c.completed) IN (
        SELECT user_id, priority, completed FROM gone
    )
    ORDER BY c.user_id, c.priority, c.completed
    FOR UPDATE;
    UPDATE task_counts c SET count = c.count - d.n
    FROM (
        SELECT user_id, priority, completed, count(*) AS n FROM gone
        GROUP BY user_id, priority, completed
    ) AS d
    WHERE (c.user_id, c.priority, c.completed) = (d.user_id, d.priority, d.completed);
    RETURN NULL;
END;
$$
"""
POSTGRES_TRIGGERS = [
    "CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks "
    "FOR EACH ROW EXECUTE FUNCTION count_tasks()",
    "CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks REFERENCING OLD TABLE AS gone "
    "FOR EACH STATEMENT EXECUTE FUNCTION count_deleted_tasks()",
]
_OLD_POSTGRES_TRIGGER = (
    "CREATE TRIGGER tasks_count_insert_delete AFTER INSERT OR DELETE ON tasks "
    "FOR EACH ROW EXECUTE FUNCTION count_tasks()"
)


def upgrade() -> None:
    # SQLite has one writer at a time, so its row triggers (0004) cannot deadlock.
    if op.get_bind().dialect.name != "postgresql":
        return
    # Writers wait until the new triggers are in place, so no write is counted twice or
    # missed; the lock lasts as long as this short migration.
    op.execute("LOCK TABLE tasks IN SHARE ROW EXCLUSIVE MODE")
    op.execute(POSTGRES_FUNCTION)
    op.execute("DROP TRIGGER tasks_count_insert_delete ON tasks")
    for statement in POSTGRES_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("LOCK TABLE tasks IN SHARE ROW EXCLUSIVE MODE")
    op.execute("DROP TRIGGER tasks_count_delete ON tasks")
    op.execute("DROP TRIGGER tasks_count_insert ON tasks")
    op.execute(_OLD_POSTGRES_TRIGGER)
    op.execute("DROP FUNCTION count_deleted_tasks()")
