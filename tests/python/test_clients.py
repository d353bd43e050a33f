"""Unmodified Python TAXII clients against a running Taxiway.

Run by tests/tests/e2e/clients_python.rs (through dev/test), which ingests the five shipped ATT&CK
bundles, projects them, serves the API and sets:

    TAXIWAY_URL          e.g. http://127.0.0.1:PORT (no trailing slash)
    TAXIWAY_ATTACK_DATA  the directory of the *.json.zst bundles that were ingested

Every expectation is computed here from those bundle files (zstandard + json); nothing about
the data is hard-coded except which files exist and their release order.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import pytest
import requests
import stix2
import zstandard
from stix2 import Filter, MemoryStore, TAXIICollectionSource
from stix2.datastore import DataSourceError
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

URL = os.environ.get("TAXIWAY_URL", "").rstrip("/")
DATA = Path(os.environ.get("TAXIWAY_ATTACK_DATA", ""))
if not URL or not DATA.is_dir():
    pytest.exit("set TAXIWAY_URL and TAXIWAY_ATTACK_DATA (tests/tests/e2e/clients_python.rs does)", 2)

# Import order = release order, as the Rust test ingests them.
ICS_FILES = ["ics-attack-17.1.json.zst", "ics-attack-18.0.json.zst", "ics-attack-18.1.json.zst"]
MOBILE_FILES = ["mobile-attack-17.0.json.zst", "mobile-attack-17.1.json.zst"]
ALL_FILES = ICS_FILES + MOBILE_FILES
TAXII_21 = "application/taxii+json;version=2.1"


# ---------------------------------------------------------------- expectations from the files


@lru_cache(maxsize=None)
def objects_of(name: str) -> tuple[dict, ...]:
    """The objects of one shipped bundle, as parsed JSON."""
    raw = zstandard.ZstdDecompressor().stream_reader((DATA / name).open("rb")).read()
    return tuple(json.loads(raw)["objects"])


def version_of(o: dict) -> str:
    """Taxiway's version rule: `modified`, else `created` (every ATT&CK object has one of them)."""
    return o.get("modified") or o["created"]


def key_of(o: dict) -> tuple[str, str]:
    return o["id"], version_of(o)


def collection_object(name: str) -> dict:
    (c,) = [o for o in objects_of(name) if o["type"] == "x-mitre-collection"]
    return c


def collection_id(files: list[str]) -> str:
    return collection_object(files[0])["id"]


def label_of(name: str) -> str:
    return collection_object(name)["x_mitre_version"]


def by_key(name: str) -> dict[tuple[str, str], dict]:
    out = {key_of(o): o for o in objects_of(name)}
    assert len(out) == len(objects_of(name)), f"{name}: (id, version) not unique"
    return out


def history(files: list[str]) -> dict[tuple[str, str], dict]:
    """Every (id, version) of the files, with the content of the newest file that has it."""
    out: dict[tuple[str, str], dict] = {}
    for f in files:
        out.update(by_key(f))
    return out


def versions_by_id(files: list[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for k in history(files):
        out.setdefault(k[0], set()).add(k[1])
    return out


def changed_ids(files: list[str]) -> list[str]:
    """Ids with more than one version across the releases (changed between releases)."""
    return sorted(i for i, v in versions_by_id(files).items() if len(v) > 1)


def active(objects) -> list:
    """The rule mitreattack-python and attackcti document for 'remove revoked/deprecated'."""
    return [o for o in objects if not o.get("revoked", False) and not o.get("x_mitre_deprecated", False)]


def plain(o) -> dict:
    """A stix2 object (or dict) as plain JSON data."""
    if isinstance(o, stix2.base._STIXBase):
        return json.loads(stix2.serialization.serialize(o))
    return json.loads(json.dumps(o))


def same(served, source: dict) -> bool:
    """`served` equals the file's object: JSON-equal for raw TAXII JSON; for a stix2 object, equal
    to the file's object parsed by stix2 (which drops properties at their default, e.g.
    `revoked: false`, when it serialises)."""
    if isinstance(served, stix2.base._STIXBase):
        return plain(served) == plain(stix2.parse(source, allow_custom=True))
    return served == source


def check_objects(what: str, served: list, expected: dict[tuple[str, str], dict]) -> None:
    """`served` is exactly the keys of `expected`, each once, each JSON-equal to its source."""
    keys = [key_of(plain(o)) for o in served]
    assert len(set(keys)) == len(keys), f"{what}: {len(keys) - len(set(keys))} duplicates"
    missing = sorted(set(expected) - set(keys))[:5]
    extra = sorted(set(keys) - set(expected))[:5]
    assert not missing and not extra, (
        f"{what}: {len(set(keys))} served, {len(expected)} expected; missing {missing}; extra {extra}"
    )
    for o in served:
        assert same(o, expected[key_of(plain(o))]), f"{what}: {key_of(plain(o))} differs from its source object"


# ---------------------------------------------------------------- fixtures


ICS_ID = collection_id(ICS_FILES)
MOBILE_ID = collection_id(MOBILE_FILES)
LATEST = {ICS_ID: ICS_FILES[-1], MOBILE_ID: MOBILE_FILES[-1]}
FILES_OF = {ICS_ID: ICS_FILES, MOBILE_ID: MOBILE_FILES}


def root_url(root: str = "") -> str:
    return f"{URL}/api/v21/{root + '/' if root else ''}"


def collection(cid: str, root: str = "") -> Collection:
    return Collection(f"{root_url(root)}collections/{cid}/")


@pytest.fixture(scope="module")
def ics_objects() -> list[dict]:
    """ICS in the default root through taxii2-client, no limit (one envelope)."""
    return collection(ICS_ID).get_objects()["objects"]


# ---------------------------------------------------------------- taxii2-client


def test_taxii2client_discovery_lists_every_root():
    server = Server(f"{URL}/taxii2/")
    assert server.default.url == root_url()
    roots = {r.url for r in server.api_roots}
    expected = {root_url(), root_url("history")} | {root_url(f"attack-{label_of(f)}") for f in ALL_FILES}
    assert roots == expected
    assert "attack-18.1" in {r.url.rstrip("/").rsplit("/", 1)[-1] for r in server.api_roots}


def test_taxii2client_api_roots_list_their_collections():
    server = Server(f"{URL}/taxii2/")
    roots = {r.url: r for r in server.api_roots}
    default = roots[root_url()]
    assert TAXII_21 in default.versions
    listed = {c.id: c for c in default.collections}
    assert set(listed) == {ICS_ID, MOBILE_ID}
    for cid, c in listed.items():
        source = collection_object(LATEST[cid])
        assert (c.title, c.description) == (source["name"], source["description"])
        assert c.can_read and not c.can_write
        assert "application/stix+json;version=2.1" in c.media_types
    # A pinned root lists exactly the collections that have that release.
    for f in ALL_FILES:
        root = ApiRoot(root_url(f"attack-{label_of(f)}"))
        has = {cid for cid, files in FILES_OF.items() if any(label_of(g) == label_of(f) for g in files)}
        assert {c.id for c in root.collections} == has, f
    assert {c.id for c in roots[root_url("history")].collections} == {ICS_ID, MOBILE_ID}


@pytest.mark.parametrize("cid", [ICS_ID, MOBILE_ID], ids=["ics", "mobile"])
def test_taxii2client_get_objects_is_the_latest_release(cid):
    envelope = collection(cid).get_objects()
    assert "more" not in envelope or envelope["more"] is False
    check_objects(f"{cid} get_objects()", envelope["objects"], by_key(LATEST[cid]))


def test_taxii2client_as_pages_walks_ics_exactly_once(ics_objects):
    c = collection(ICS_ID)
    pages = list(as_pages(c.get_objects, per_request=50))
    assert len(pages) > 1
    assert all(len(p.get("objects", [])) <= 50 for p in pages)
    assert all(p.get("more") for p in pages[:-1]) and not pages[-1].get("more")
    walked = [o for p in pages for o in p.get("objects", [])]
    check_objects("as_pages(per_request=50)", walked, by_key(ICS_FILES[-1]))
    assert [key_of(o) for o in walked] == [key_of(o) for o in ics_objects], "same order as one envelope"
    # per_request=0 sends no limit: everything in one envelope.
    (only,) = list(as_pages(c.get_objects, per_request=0))
    check_objects("as_pages(per_request=0)", only["objects"], by_key(ICS_FILES[-1]))


def test_taxii2client_filters_match_the_file():
    c = collection(ICS_ID)
    latest = by_key(ICS_FILES[-1])
    for t in ("attack-pattern", "x-mitre-tactic"):
        got = c.get_objects(type=t)["objects"]
        check_objects(f"type={t}", got, {k: o for k, o in latest.items() if o["type"] == t})
    some = sorted(latest)[::97][:5]
    got = c.get_objects(id=",".join(i for i, _ in some))["objects"]
    check_objects("id=…", got, {k: latest[k] for k in some})


@pytest.mark.parametrize("cid", [ICS_ID, MOBILE_ID], ids=["ics", "mobile"])
def test_taxii2client_manifest_matches_the_latest_release(cid):
    c = collection(cid)
    entries = [e for p in as_pages(c.get_manifest, per_request=100) for e in p.get("objects", [])]
    keys = [(e["id"], e["version"]) for e in entries]
    assert len(set(keys)) == len(keys)
    assert set(keys) == set(by_key(LATEST[cid]))
    assert all(e["media_type"] == "application/stix+json;version=2.1" for e in entries if "media_type" in e)


def test_taxii2client_pinned_roots_serve_each_release():
    """Each pinned root serves its own file's objects, re-issued ones included (MITRE re-issued
    some versions with other content in later releases)."""
    for cid, files in FILES_OF.items():
        for f in files:
            served = collection(cid, f"attack-{label_of(f)}").get_objects()["objects"]
            check_objects(f"attack-{label_of(f)}", served, by_key(f))


def test_taxii2client_versions_in_history_and_default_roots():
    expected = versions_by_id(ICS_FILES)
    latest = dict(by_key(ICS_FILES[-1]))
    latest_version = {i: v for i, v in latest}
    changed = changed_ids(ICS_FILES)
    assert changed, "the ICS releases change some objects"
    hist = collection(ICS_ID, "history")
    default = collection(ICS_ID)
    for i in changed:
        assert set(hist.object_versions(i)["versions"]) == expected[i], i
        if i in latest_version:
            assert default.object_versions(i)["versions"] == [latest_version[i]], i
    # match[version]=all over the whole history root: every version of every file, once.
    everything = hist.get_objects(version="all")["objects"]
    check_objects("history version=all", everything, history(ICS_FILES))


# ---------------------------------------------------------------- stix2


def test_stix2_get_returns_the_latest_version():
    src = TAXIICollectionSource(collection(ICS_ID))
    latest = {o["id"]: o for o in objects_of(ICS_FILES[-1])}
    ids = sorted(latest)
    sample = ids[::25] + changed_ids(ICS_FILES)[:10]
    for i in sample:
        got = src.get(i)
        if i not in latest:
            assert got is None, f"{i} was dropped from {ICS_FILES[-1]}"
        else:
            assert same(got, latest[i]), i


@pytest.mark.parametrize("cid", [ICS_ID, MOBILE_ID], ids=["ics", "mobile"])
def test_stix2_query_attack_patterns_equals_the_file(cid):
    src = TAXIICollectionSource(collection(cid))
    got = src.query([Filter("type", "=", "attack-pattern")])
    want = {k: o for k, o in by_key(LATEST[cid]).items() if o["type"] == "attack-pattern"}
    assert want
    check_objects("query(type=attack-pattern)", got, want)


def test_stix2_query_pages_with_a_small_items_per_page():
    src = TAXIICollectionSource(collection(ICS_ID), items_per_page=40)
    got = src.query([Filter("type", "=", "relationship")])
    want = {k: o for k, o in by_key(ICS_FILES[-1]).items() if o["type"] == "relationship"}
    assert len(want) > 40
    check_objects("query(type=relationship), 40 per page", got, want)


@pytest.mark.parametrize("cid", [ICS_ID, MOBILE_ID], ids=["ics", "mobile"])
def test_stix2_all_versions_on_the_history_root(cid):
    files = FILES_OF[cid]
    content = history(files)
    expected = versions_by_id(files)
    changed = changed_ids(files)
    assert changed
    src = TAXIICollectionSource(collection(cid, "history"))
    for i in changed[:: max(1, len(changed) // 60)]:
        got = src.all_versions(i)
        check_objects(f"all_versions({i})", got, {(i, v): content[(i, v)] for v in expected[i]})


# ---------------------------------------------------------------- mitreattack-python


def _via_taxii(cid: str) -> list[dict]:
    return [o for p in as_pages(collection(cid).get_objects, per_request=500) for o in p.get("objects", [])]


@pytest.mark.parametrize("cid", [ICS_ID, MOBILE_ID], ids=["ics", "mobile"])
def test_mitreattack_data_over_taxii_equals_over_the_file(cid, tmp_path):
    from mitreattack.stix20 import MitreAttackData

    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps({"type": "bundle", "id": "bundle--0", "objects": list(objects_of(LATEST[cid]))}))
    from_file = MitreAttackData(stix_filepath=str(bundle))
    via_taxii = MitreAttackData(src=MemoryStore(stix_data=_via_taxii(cid), allow_custom=True))

    def ids(objects) -> list[tuple[str, str]]:
        return sorted(key_of(plain(o)) for o in objects)

    # The library's own rule, computed independently from the file.
    want = active(o for o in objects_of(LATEST[cid]) if o["type"] == "attack-pattern")
    assert ids(via_taxii.get_techniques(remove_revoked_deprecated=True)) == sorted(map(key_of, want))
    for method in (
        "get_techniques",
        "get_subtechniques",
        "get_tactics",
        "get_matrices",
        "get_mitigations",
        "get_groups",
        "get_software",
        "get_campaigns",
        "get_assets",
        "get_datacomponents",
    ):
        for rrd in (False, True):
            a = getattr(via_taxii, method)(remove_revoked_deprecated=rrd)
            b = getattr(from_file, method)(remove_revoked_deprecated=rrd)
            assert ids(a) == ids(b), f"{method}(remove_revoked_deprecated={rrd})"
            assert [plain(x) for x in sorted(a, key=lambda x: x["id"])] == [
                plain(x) for x in sorted(b, key=lambda x: x["id"])
            ], method
    # Relationship walks give the same answers.
    a = via_taxii.get_all_techniques_used_by_all_groups()
    b = from_file.get_all_techniques_used_by_all_groups()
    assert {g: sorted(t["object"]["id"] for t in ts) for g, ts in a.items()} == {
        g: sorted(t["object"]["id"] for t in ts) for g, ts in b.items()
    }
    t = sorted(want, key=lambda o: o["id"])[0]
    attack_id = next(r["external_id"] for r in t["external_references"] if r["source_name"].startswith("mitre"))
    assert via_taxii.get_object_by_attack_id(attack_id, "attack-pattern")["id"] == t["id"]


# ---------------------------------------------------------------- attackcti


ENTERPRISE_ID = "x-mitre-collection--1f5f1533-f617-4ca8-9ab4-6a02367fa019"


def test_attackcti_custom_collection_url_is_used_and_needs_all_three_collections():
    """attackcti >= 0.6 takes `collection_url`; its TAXII mode opens Enterprise, Mobile and ICS.

    The shipped data has no Enterprise release, so `attack_client(collection_url=Taxiway)` fails
    on the Enterprise collection — with a 404 from Taxiway, which shows the URL was honoured.
    """
    from attackcti import attack_client
    from attackcti.constants import (
        ATTACK_TAXII_COLLECTIONS_URL,
        ENTERPRISE_ATTACK_COLLECTION_ID,
        ICS_ATTACK_COLLECTION_ID,
        MOBILE_ATTACK_COLLECTION_ID,
    )

    assert ATTACK_TAXII_COLLECTIONS_URL.startswith("https://attack-taxii.mitre.org/")
    assert (ICS_ATTACK_COLLECTION_ID, MOBILE_ATTACK_COLLECTION_ID) == (ICS_ID, MOBILE_ID)
    assert ENTERPRISE_ATTACK_COLLECTION_ID == ENTERPRISE_ID
    served = {c.id for c in ApiRoot(root_url()).collections}
    if ENTERPRISE_ID in served:  # data with Enterprise: the plain constructor works
        client = attack_client(collection_url=f"{root_url()}collections/")
        assert client.mode == "taxii"
        return
    with pytest.raises(DataSourceError) as failure:
        attack_client(collection_url=f"{root_url()}collections/")
    cause = failure.value.args[-1]
    assert isinstance(cause, requests.HTTPError), failure.value
    assert cause.response.status_code == 404
    assert cause.response.url == f"{root_url()}collections/{ENTERPRISE_ID}/"


@pytest.mark.parametrize("domain", ["ics", "mobile"])
def test_attackcti_domain_clients_over_taxiway(domain):
    """attackcti's client over its own TAXII sources for the collections Taxiway serves."""
    from attackcti import MitreAttackClient
    from attackcti.sources.attack_source import MitreAttackSource
    from stix2 import CompositeDataSource

    ics = TAXIICollectionSource(collection(ICS_ID))
    mobile = TAXIICollectionSource(collection(MOBILE_ID))
    composite = CompositeDataSource()
    composite.add_data_sources([mobile, ics])
    source = MitreAttackSource(
        enterprise=None,
        mobile=mobile,
        ics=ics,
        composite=composite,
        versions={"enterprise": None, "mobile": "2.1", "ics": "2.1"},
        mode="taxii",
        spec_version="2.1",
    )
    client = MitreAttackClient(attack_source=source)
    cid = ICS_ID if domain == "ics" else MOBILE_ID
    dc = getattr(client, domain)
    latest = objects_of(LATEST[cid])

    def want(*types: str, keep_revoked_deprecated: bool = False) -> list[tuple[str, str]]:
        chosen = [o for o in latest if o["type"] in types]
        return sorted(map(key_of, chosen if keep_revoked_deprecated else active(chosen)))

    def got(objects) -> list[tuple[str, str]]:
        return sorted(key_of(plain(o)) for o in objects)

    assert want("attack-pattern")
    assert got(dc.get_techniques()) == want("attack-pattern")
    # get_tactics() keeps revoked/deprecated tactics (it has no skip_revoked_deprecated flag).
    assert got(dc.get_tactics()) == want("x-mitre-tactic", keep_revoked_deprecated=True)
    assert got(dc.get_mitigations()) == want("course-of-action")
    assert got(dc.get_groups()) == want("intrusion-set")
    assert got(dc.get_malware()) == want("malware")
    techniques = {o["id"]: o for o in dc.get_techniques()}
    for k in want("attack-pattern"):
        source = next(o for o in latest if key_of(o) == k)
        assert same(techniques[k[0]], source), k
