"""The database layer: pool and transactions, SQL policy, held transactions, migrations, the embedded server
and pgcode's own SQL files. Imports only the leaves."""
