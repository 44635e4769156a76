"""The rollout: from the governance rules to every runtime, and back.

The portal compiles the database into one MeshConfig document, records it as a version and
publishes it to Redis, where the runtimes pick it up; the runtimes' heartbeats come back as the
registry, which says who applied what. Where each step lives:

- ``capture``: signal receivers that notice a committed change and enqueue a push;
- ``tasks``: the Celery tasks (push, periodic reconcile, prune);
- ``push``: compile → record → publish and prune, under a lock;
- ``restore``: rollback, which restores the database to a version's content and publishes it;
  the drift of a runtime's version;
- ``disclosure``: what of a document leaves the server, and to whom;
- ``compiler``, ``diff``: the document from the database; what changed between two documents;
- ``redis_keys``: the portal's Redis client and every key name it uses;
- ``registry``: heartbeats into Runtime rows (``manage.py mesh ingest-heartbeats``);
- ``live``, ``consumers``: the live updates of the runtimes and config version pages;
- ``models``, ``views``, ``urls``, ``api/``, ``templates/rollout/``: as in every app.
"""
