# SigningKeyring takes the shape every versioned outbox shares
# (authz/versioned_outbox.py): published_* become pushed_*, and retry_after.
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("authz", "0003_issued_credentials"),
    ]

    operations = [
        migrations.RenameField(model_name="signingkeyring", old_name="published_version", new_name="pushed_version"),
        migrations.RenameField(model_name="signingkeyring", old_name="published_at", new_name="pushed_at"),
        migrations.AddField(
            model_name="signingkeyring",
            name="retry_after",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
