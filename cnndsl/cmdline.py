"""argparse as the command line uses it: imported without gettext, its messages untranslated.

argparse translates each of its messages with gettext, which looks for an "argparse" catalogue
at every call (it imports locale, and stats a file per language of the environment) and finds
none: no such catalogue ships with Python. cnndsl's own messages are English, and so are
argparse's here, as they are written (about 3 ms of every start: ~70 us a message, and locale's
import). argparse takes those two functions from gettext at its import; when nothing has
imported gettext yet, it gets them from a stand-in, and gettext itself (~1.5 ms) is left for
whoever imports it later.
"""

from __future__ import annotations

import sys


def _ngettext(singular: str, plural: str, n: int) -> str:
    return singular if n == 1 else plural


def _import():
    if "gettext" in sys.modules or "argparse" in sys.modules:
        import argparse
    else:
        stand_in = type(sys)("gettext")
        stand_in.gettext, stand_in.ngettext = str, _ngettext
        sys.modules["gettext"] = stand_in
        try:
            import argparse
        finally:
            del sys.modules["gettext"]
    argparse._ = str
    argparse.ngettext = _ngettext
    return argparse


argparse = _import()
