# Shared code for the indexops modules: spec validation, SQL composition, catalog look-ups,
# retries and progress. Only library/*.py talk to PostgreSQL, through these helpers.
