"""The admin UI's pages, one module per area; each class lists its routes."""
