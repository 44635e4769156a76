from tests.portal_support.personas import *  # noqa: F403 - the personas and their teams
