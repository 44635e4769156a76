from tests.portal_support.mesh import mesh_redis  # noqa: F401 - a fixture: staff push in the URL walk
from tests.portal_support.personas import *  # noqa: F403 - the personas and their teams
