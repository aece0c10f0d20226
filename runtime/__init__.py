"""The shared runtime of Punte's services: settings, logging, telemetry, the CloudEvents
codec, message signing, tokens, the database, the transactional outbox and the idempotent
inbox. It holds mechanisms only; business rules live in each service's ``domain``."""
