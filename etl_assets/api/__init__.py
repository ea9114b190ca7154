"""The job API: pipelines, runs and the audit trail over HTTP, behind tokens with roles."""
