"""ConfigVersion and Runtime move to the rollout app (its migration 0001 takes them over).

The rows stay where they are: the tables are renamed to the rollout app's names, and only the
migration state forgets the models here.
"""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('governance', '0004_configversion_pruned'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.AlterModelTable('configversion', 'rollout_configversion'),
                migrations.AlterModelTable('runtime', 'rollout_runtime'),
            ],
            state_operations=[
                migrations.DeleteModel('configversion'),
                migrations.DeleteModel('runtime'),
            ],
        ),
    ]
