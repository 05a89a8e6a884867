"""Rasa's custom-action HTTP protocol, served by the gateway: all business logic lives here."""
