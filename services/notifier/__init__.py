"""Notifier service: recipient directory, email templates, an exactly-once email outbox and SMTP delivery."""
