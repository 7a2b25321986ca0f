"""Portal identities: one per ID number and proved phone. The SMS code proves the phone, not
the ID number; keyed on the ID number alone, signing in with somebody else's ID number and
one's own phone took over their identity (questions, complaints, visit requests).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("portal_identities") as batch:
        batch.drop_constraint("uq_portal_identities_id_key", type_="unique")
        batch.create_unique_constraint("uq_portal_identities_id_key_phone", ["id_key", "phone"])


def downgrade() -> None:
    shared = (
        op.get_bind()
        .exec_driver_sql("SELECT id_key FROM portal_identities GROUP BY id_key HAVING COUNT(*) > 1")
        .first()
    )
    if shared is not None:
        raise RuntimeError(
            "portal identities of one ID number with several phones exist; "
            "this downgrade would have to merge them and is refused"
        )
    with op.batch_alter_table("portal_identities") as batch:
        batch.drop_constraint("uq_portal_identities_id_key_phone", type_="unique")
        batch.create_unique_constraint("uq_portal_identities_id_key", ["id_key"])
