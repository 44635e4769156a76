"""What the portal's test suites share: personas and their teams (``personas``), factories,
the generic page and API tests (``mixins``) and the small mesh (``mesh``). Each suite's
conftest imports the persona fixtures."""
