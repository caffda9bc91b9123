"""The ratio chart's linked points (crossbn/report/svg.py, ratio_distribution):
a point with a link is an <a> around its dot with the link's tooltip, its
href and text escaped; a point without one, and a row given no links at all,
draw exactly as before."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from crossbn.report import svg

NS = {"s": "http://www.w3.org/2000/svg"}


def test_a_linked_point_is_an_anchor_around_its_dot_and_the_rest_are_unchanged():
    plain = svg.ratio_distribution([("a", [0.5, 3.0, 7.0])])
    hostile = 'findings/x"><script>alert(1)</script>.html#member-y'
    linked = svg.ratio_distribution(
        [("a", [0.5, 3.0, 7.0], [None, ("findings/p.html", "case <1>: deviation"), (hostile, "t")])]
    )
    root = ET.fromstring(str(linked))  # well-formed: nothing from the data broke out of its attribute
    anchors = root.findall(".//s:a", NS)
    assert [a.get("href") for a in anchors] == ["findings/p.html", hostile]
    assert [a.find("s:title", NS).text for a in anchors] == ["case <1>: deviation", "t"]
    assert all(len(a.findall("s:circle", NS)) == 1 for a in anchors)
    assert len(root.findall(".//s:circle", NS)) == 3  # one dot per ratio, linked or not
    # taking the anchors out gives the plain chart, byte for byte
    unwrapped = str(linked)
    for a in ('<a class="point-link" href="findings/p.html"><title>case &lt;1&gt;: deviation</title>',):
        unwrapped = unwrapped.replace(a, "")
    unwrapped = unwrapped.replace(f'<a class="point-link" href="{svg.esc(hostile)}"><title>t</title>', "").replace(
        "/></a>", "/>"
    )
    assert unwrapped == str(plain)
    assert str(svg.ratio_distribution([("a", [0.5, 3.0, 7.0], [None, None, None])])) == str(plain)
