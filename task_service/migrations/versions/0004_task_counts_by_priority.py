"""keep task_counts per user, priority and completed, so priority filters need no COUNT

With counts per user only, `?priority=high` counted the user's high-priority tasks for
X-Total-Count: a scan of all of them (33 ms at 100,000 tasks). `task_counts` now holds one
row per (user_id, priority, completed), at most six per user, and a list filtered by status
and/or priority sums the rows that match.

The triggers keep the new rows as 0002 kept the old ones, whoever writes; the TRUNCATE
trigger of 0003 empties the table under its unchanged name, and recount_tasks() rebuilds
the new rows.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The two halves of a move, in PL/pgSQL: a task's new row gains one (created at 1 when
# missing), its old row loses one.
_ADD_NEW = """
        INSERT INTO task_counts AS c (user_id, priority, completed, count)
        VALUES (NEW.user_id, NEW.priority, NEW.completed, 1)
        ON CONFLICT (user_id, priority, completed) DO UPDATE SET count = c.count + 1;"""
_REMOVE_OLD = """
        UPDATE task_counts SET count = count - 1
        WHERE user_id = OLD.user_id AND priority = OLD.priority AND completed = OLD.completed;"""
# Both run with the search_path of their creation (the service's schema), whatever the
# search_path of the session that writes. CREATE OR REPLACE keeps the triggers that call them.
POSTGRES_FUNCTIONS = [
    f"""
CREATE OR REPLACE FUNCTION count_tasks() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        -- Two updates moving tasks between the same two rows in opposite directions (one
        -- toggled on, one off) would lock them in opposite orders and deadlock: whichever
        -- way a task moves, the row first in key order is locked first.
        IF (OLD.user_id, OLD.priority, OLD.completed)
                < (NEW.user_id, NEW.priority, NEW.completed) THEN
            {_REMOVE_OLD}{_ADD_NEW}
        ELSE
            {_ADD_NEW}{_REMOVE_OLD}
        END IF;
    ELSIF TG_OP = 'INSERT' THEN
        {_ADD_NEW}
    ELSE
        {_REMOVE_OLD}
    END IF;
    RETURN NULL;
END;
$$
""",
    """
CREATE OR REPLACE FUNCTION recount_tasks() RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    -- Writers wait until the counts are rebuilt, so none is missed or counted twice.
    LOCK TABLE tasks IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM task_counts;
    INSERT INTO task_counts (user_id, priority, completed, count)
    SELECT user_id, priority, completed, count(*) FROM tasks
    GROUP BY user_id, priority, completed;
END;
$$
""",
]
# Only the columns of the key move a task between rows.
POSTGRES_UPDATE_TRIGGER = (
    "CREATE OR REPLACE TRIGGER tasks_count_update "
    "AFTER UPDATE OF completed, priority, user_id ON tasks "
    "FOR EACH ROW WHEN (OLD.completed IS DISTINCT FROM NEW.completed "
    "OR OLD.priority IS DISTINCT FROM NEW.priority "
    "OR OLD.user_id IS DISTINCT FROM NEW.user_id) EXECUTE FUNCTION count_tasks()"
)

# SQLite has one writer at a time: no lock order to mind.
_SQLITE_ADD = """
    INSERT INTO task_counts (user_id, priority, completed, count)
    VALUES (NEW.user_id, NEW.priority, NEW.completed, 1)
    ON CONFLICT (user_id, priority, completed) DO UPDATE SET count = count + 1;
"""
_SQLITE_REMOVE = """
    UPDATE task_counts SET count = count - 1
    WHERE user_id = OLD.user_id AND priority = OLD.priority AND completed = OLD.completed;
"""
SQLITE_TRIGGERS = [
    f"CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks BEGIN {_SQLITE_ADD} END",
    f"CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks BEGIN {_SQLITE_REMOVE} END",
    "CREATE TRIGGER tasks_count_update AFTER UPDATE OF completed, priority, user_id ON tasks "
    "WHEN OLD.completed <> NEW.completed OR OLD.priority <> NEW.priority "
    "OR OLD.user_id <> NEW.user_id "
    f"BEGIN {_SQLITE_REMOVE} {_SQLITE_ADD} END",
]
SQLITE_TRIGGER_NAMES = ("tasks_count_update", "tasks_count_delete", "tasks_count_insert")

BACKFILL = """
INSERT INTO task_counts (user_id, priority, completed, count)
SELECT user_id, priority, completed, count(*) FROM tasks GROUP BY user_id, priority, completed
"""


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        # No writer may slip between the backfill and the new triggers: writers wait for
        # the commit, so the old triggers, in place until then, never meet the new table.
        op.execute("LOCK TABLE tasks IN SHARE ROW EXCLUSIVE MODE")
    else:
        for name in SQLITE_TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table("task_counts")
    op.create_table(
        "task_counts",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("priority", sa.String(length=6), nullable=False),
        sa.Column("completed", sa.Boolean(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "priority", "completed", name=op.f("pk_task_counts")),
    )
    op.execute(BACKFILL)
    if postgres:
        for statement in POSTGRES_FUNCTIONS:
            op.execute(statement)
        # CREATE OR REPLACE TRIGGER (PostgreSQL 14+) needs no stronger lock than the one
        # above; DROP TRIGGER would take an exclusive one, blocking readers of `tasks` too.
        op.execute(POSTGRES_UPDATE_TRIGGER)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


# 0002's table, triggers and backfill, and 0003's recount_tasks(), for the downgrade.
_OLD_POSTGRES_FUNCTIONS = [
    """
CREATE OR REPLACE FUNCTION count_tasks() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE task_counts
        SET total = total - 1, completed = completed - OLD.completed::int
        WHERE user_id = OLD.user_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO task_counts (user_id, total, completed) VALUES (NEW.user_id, 0, 0)
        ON CONFLICT (user_id) DO NOTHING;
        UPDATE task_counts
        SET total = total + 1, completed = completed + NEW.completed::int
        WHERE user_id = NEW.user_id;
    END IF;
    RETURN NULL;
END;
$$
""",
    """
CREATE OR REPLACE FUNCTION recount_tasks() RETURNS void
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
_OLD_POSTGRES_UPDATE_TRIGGER = (
    "CREATE OR REPLACE TRIGGER tasks_count_update AFTER UPDATE OF completed, user_id ON tasks "
    "FOR EACH ROW WHEN (OLD.completed IS DISTINCT FROM NEW.completed "
    "OR OLD.user_id IS DISTINCT FROM NEW.user_id) EXECUTE FUNCTION count_tasks()"
)
_OLD_SQLITE_ADD = """
    INSERT OR IGNORE INTO task_counts (user_id, total, completed) VALUES (NEW.user_id, 0, 0);
    UPDATE task_counts SET total = total + 1, completed = completed + NEW.completed
    WHERE user_id = NEW.user_id;
"""
_OLD_SQLITE_REMOVE = """
    UPDATE task_counts SET total = total - 1, completed = completed - OLD.completed
    WHERE user_id = OLD.user_id;
"""
_OLD_SQLITE_TRIGGERS = [
    f"CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks BEGIN {_OLD_SQLITE_ADD} END",
    f"CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks BEGIN {_OLD_SQLITE_REMOVE} END",
    "CREATE TRIGGER tasks_count_update AFTER UPDATE OF completed, user_id ON tasks "
    "WHEN OLD.completed <> NEW.completed OR OLD.user_id <> NEW.user_id "
    f"BEGIN {_OLD_SQLITE_REMOVE} {_OLD_SQLITE_ADD} END",
]
_OLD_BACKFILL = """
INSERT INTO task_counts (user_id, total, completed)
SELECT user_id, count(*), sum(CASE WHEN completed THEN 1 ELSE 0 END)
FROM tasks GROUP BY user_id
"""


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("LOCK TABLE tasks IN SHARE ROW EXCLUSIVE MODE")
        for statement in _OLD_POSTGRES_FUNCTIONS:
            op.execute(statement)
    else:
        for name in SQLITE_TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table("task_counts")
    op.create_table(
        "task_counts",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("completed", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_task_counts")),
    )
    op.execute(_OLD_BACKFILL)
    if postgres:
        op.execute(_OLD_POSTGRES_UPDATE_TRIGGER)
    else:
        for statement in _OLD_SQLITE_TRIGGERS:
            op.execute(statement)
