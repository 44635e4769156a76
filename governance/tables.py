from meshadmin.tables import Column

APPLICATION_COLUMNS = [
    Column("name", linkify=True),
    Column("team", linkify=True, order_by="team__name"),
    Column("contact", order_by=None),
    Column("subscription_count", "Subscriptions"),
    Column("key_count", "Active keys"),
]

APPLICATIONKEY_COLUMNS = [
    Column("prefix", template="governance/cells/key_prefix.html", order_by="prefix"),
    Column("application", linkify=True, order_by="application__name"),
    Column("description", order_by=None),
    Column("status", template="governance/cells/key_status.html", order_by=None),
    Column("expires"),
    Column("created"),
]

ACCESSRULE_COLUMNS = [
    Column("id", "Rule", template="governance/cells/rule_link.html", order_by="pk"),
    Column("effect", template="governance/cells/effect.html", order_by="effect"),
    Column("principal", "Applies to", accessor="principal_display", order_by=None),
    Column("actions", order_by=None),
    Column("topic_pattern", "Topics"),
    Column("team", "Managed by", linkify=True, order_by="team__name"),
    Column("description", order_by=None),
]

ROUTINGRULE_COLUMNS = [
    Column("id", "Rule", template="governance/cells/rule_link.html", order_by="pk"),
    Column("source_pattern", "Source"),
    Column("state", template="governance/cells/review_state.html"),
    Column("targets", accessor="targets", order_by=None),
    Column("enabled"),
    Column("order"),
    Column("team", "Managed by", linkify=True, order_by="team__name"),
    Column("description", order_by=None),
]
