"""The web service (``ketasim serve``): a JSON API and a single page over the simulator.

>>> from ketasim.web import create_app
>>> app = create_app("/tmp/ketasim-web-doctest", warm=False)   # doctest: +SKIP

See ``docs/web.md``. For research and teaching only.
"""

from .app import create_app

__all__ = ["create_app"]
