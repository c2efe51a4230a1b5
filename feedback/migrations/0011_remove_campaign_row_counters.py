"""The campaign row's label counters, now in CampaignCounter's shards (see 0010)."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("feedback", "0010_campaign_counter_shards"),
    ]

    operations = [
        migrations.RemoveField(model_name="campaign", name="extra_slots"),
        migrations.RemoveField(model_name="campaign", name="label_count"),
    ]
