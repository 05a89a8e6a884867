"""civicgate's gateway: FastAPI app, conversation orchestration, Rasa action endpoint."""
