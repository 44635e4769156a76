from meshadmin.tables import Column

SUBSCRIPTION_COLUMNS = [
    Column("id", "Subscription", template="subscriptions/cells/link.html", order_by="pk"),
    Column("application", linkify=True, order_by="application__name"),
    Column("topic", linkify=True, order_by="topic__name"),
    Column("state", template="subscriptions/cells/state.html", order_by="state"),
    Column("target", "Target", accessor=lambda s: s.target_url, order_by=None),
    Column("delivery_mode", "Mode", accessor="delivery_mode"),
    Column("created"),
]
