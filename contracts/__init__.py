"""The public contract of the Punte network: event types, topics, schemas, reference data.

Everything here is written for the institutions that integrate with Punte. The JSON Schemas
under ``schemas/`` are the contract; the Python models in ``events.py`` mirror them and a
test keeps the two in agreement.
"""
