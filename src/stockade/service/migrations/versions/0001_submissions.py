"""The submissions table (Judge0 CE 1.13.1's columns, plus callback_pending).

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "submissions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("token", sa.String(36), nullable=False, unique=True),
        sa.Column("source_code", sa.LargeBinary),
        sa.Column("language_id", sa.Integer, nullable=False),
        sa.Column("stdin", sa.LargeBinary),
        sa.Column("expected_output", sa.LargeBinary),
        sa.Column("stdout", sa.LargeBinary),
        sa.Column("stderr", sa.LargeBinary),
        sa.Column("compile_output", sa.LargeBinary),
        sa.Column("message", sa.LargeBinary),
        sa.Column("status_id", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("time", sa.Float),
        sa.Column("wall_time", sa.Float),
        sa.Column("memory", sa.Integer),
        sa.Column("exit_code", sa.Integer),
        sa.Column("exit_signal", sa.Integer),
        sa.Column("number_of_runs", sa.Integer, nullable=False),
        sa.Column("cpu_time_limit", sa.Float, nullable=False),
        sa.Column("cpu_extra_time", sa.Float, nullable=False),
        sa.Column("wall_time_limit", sa.Float, nullable=False),
        sa.Column("memory_limit", sa.Integer, nullable=False),
        sa.Column("stack_limit", sa.Integer, nullable=False),
        sa.Column("max_processes_and_or_threads", sa.Integer, nullable=False),
        sa.Column("enable_per_process_and_thread_time_limit", sa.Boolean, nullable=False),
        sa.Column("enable_per_process_and_thread_memory_limit", sa.Boolean, nullable=False),
        sa.Column("max_file_size", sa.Integer, nullable=False),
        sa.Column("compiler_options", sa.Text),
        sa.Column("command_line_arguments", sa.Text),
        sa.Column("redirect_stderr_to_stdout", sa.Boolean, nullable=False),
        sa.Column("callback_url", sa.Text),
        sa.Column("additional_files", sa.LargeBinary),
        sa.Column("enable_network", sa.Boolean, nullable=False),
        sa.Column("callback_pending", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_submissions_status_id", "submissions", ["status_id"])
    op.create_index("ix_submissions_callback_pending", "submissions", ["callback_pending"])


def downgrade() -> None:
    op.drop_table("submissions")
