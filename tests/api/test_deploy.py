"""`deploy_services`: what a stack deploy calls: validate every spec, then write all or none."""

from __future__ import annotations

import pytest

from controlplane import keys
from controlplane.api.control.errors import Invalid
from controlplane.api.control.services import deploy_services
from controlplane.models import ServiceSpec
from controlplane.models.service import ServiceRecord
from tests.api.conftest import Api


def specs(*names: str, image: str = "nginx") -> list[ServiceSpec]:
    return [ServiceSpec(name=name, image=image, stack="shop") for name in names]


async def test_all_services_land_in_one_revision(cluster: Api) -> None:
    records, revision = await deploy_services(cluster.store, specs("shop_web", "shop_db"), now=1.0)
    assert [r.spec.name for r in records] == ["shop_web", "shop_db"]
    for name in ("shop_web", "shop_db"):
        kv = await cluster.store.get(keys.service(name))
        assert kv is not None
        assert kv.mod_revision == revision


async def test_one_bad_spec_writes_nothing(cluster: Api) -> None:
    batch = specs("shop_web", "shop_db")
    batch[1] = batch[1].model_copy(
        update={"placement": batch[1].placement.model_copy(update={"constraints": ["x.y==1"]})}
    )
    before = (await cluster.store.list("")).revision
    with pytest.raises(Invalid) as refused:
        await deploy_services(cluster.store, batch, now=1.0)
    assert refused.value.loc == ("body", 1, "placement", "constraints", 0)
    assert (await cluster.store.list("")).revision == before


async def test_redeploying_updates_only_what_changed(cluster: Api) -> None:
    await deploy_services(cluster.store, specs("shop_web", "shop_db"), now=1.0)
    web_before = await cluster.store.get(keys.service("shop_web"))
    changed = [*specs("shop_web"), *specs("shop_db", image="postgres")]
    await deploy_services(cluster.store, changed, now=2.0)
    web_after = await cluster.store.get(keys.service("shop_web"))
    db = await cluster.store.get(keys.service("shop_db"))
    assert web_before is not None
    assert web_after is not None
    assert db is not None
    assert web_after.mod_revision == web_before.mod_revision
    record = ServiceRecord.load(db.value)
    assert record.spec_version == 2
    assert record.previous_spec is not None
    assert record.previous_spec.image == "nginx"


async def test_a_name_twice_is_refused(cluster: Api) -> None:
    with pytest.raises(Invalid) as refused:
        await deploy_services(cluster.store, specs("shop_web", "shop_web"), now=1.0)
    assert refused.value.loc == ("body", 1, "name")
