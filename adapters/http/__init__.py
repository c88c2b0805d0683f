"""The REST surface: Starlette routes over the command side and the views."""
