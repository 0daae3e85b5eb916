"""The fiscal calendars revattr knows (``pipelines.rules.fiscal_calendar``); no import, so
the CLI can offer them without loading pyarrow."""

KINDS: tuple[str, ...] = ("months", "4-4-5", "4-5-4", "5-4-4")
WEEKDAYS: tuple[str, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday",
                             "saturday", "sunday")
