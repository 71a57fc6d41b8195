"""Ray Tune / Ray Train entry points. The only package that imports Ray."""
