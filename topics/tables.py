from meshadmin.tables import Column

TOPIC_COLUMNS = [
    Column("name", linkify=True),
    Column("team", linkify=True, order_by="team__name"),
    Column("store", order_by="store__name"),
    Column("lifecycle", template="topics/cells/lifecycle.html", order_by="lifecycle"),
    Column("tags", accessor="tags", order_by=None),
    Column("updated", order_by="updated", accessor=lambda t: t.updated.strftime("%Y-%m-%d %H:%M")),
]

EVENTSTORE_COLUMNS = [
    Column("name", linkify=True),
    Column("kind"),
    Column("description", order_by=None),
]
