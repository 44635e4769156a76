from tests.portal_support.personas import *  # noqa: F403 - the personas and their teams
from tests.portal_support.runtime import mesh_runtime  # noqa: F401 - a real runtime beside the portal
