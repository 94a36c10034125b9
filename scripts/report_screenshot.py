"""Open an HTML report in headless Chromium and save a screenshot (for docs/).

Usage: python scripts/report_screenshot.py REPORT.html OUT.png [--full]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.browser import open_report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--full", action="store_true", help="the whole page, not the first screen")
    parser.add_argument("--height", type=int, default=900, help="viewport height (default: %(default)s)")
    parser.add_argument("--scroll-to", help="text of a heading to scroll to first")
    args = parser.parse_args()
    with open_report(args.report, height=args.height) as page:
        if args.scroll_to:
            page.get_by_role("heading", name=args.scroll_to).scroll_into_view_if_needed()
        page.screenshot(path=str(args.out), full_page=args.full)
        print(f"{args.out}: {page.errors or 'no console errors'}")


if __name__ == "__main__":
    main()
