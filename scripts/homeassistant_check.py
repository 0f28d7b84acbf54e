"""Drive a real Home Assistant: onboarding, MQTT, the dashboard, Energy, checks and screenshots.

Run by ``scripts/screenshots.sh`` with Home Assistant's own Python (3.13+, aiohttp), in the tree
``scripts/homeassistant.sh`` builds; not part of the daemon (which stays Python 3.8+).  Steps:

1. onboarding over HTTP: the owner user and a token (the other steps are marked done);
2. the MQTT integration through its config flow, pointed at the test broker;
3. waits for the daemon's devices and entities, then checks them (counts, ids, platforms);
4. the dashboard (``homeassistant/dashboard.yaml``) saved with ``lovelace/config/save``;
5. the bank as a home battery in the Energy preferences, then ``energy/validate``;
6. screenshots with headless Chromium over its DevTools protocol (tokens put in localStorage):
   the bank and cells views of the dashboard and a battery's device page; every view is checked
   for "entity not available" warnings;
7. Home Assistant's log: any WARNING or ERROR is a failure.

Prints one line per check and writes ``report.json``; exit status 1 when a check failed.
"""

import argparse
import asyncio
import base64
import json
import os
import re
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import aiohttp
import yaml

CLIENT_ID = "http://127.0.0.1/"
DASHBOARD = "dashboard-batteries"  # the dashboard's url path (it needs a hyphen)
USER = {"name": "Battery owner", "username": "owner", "password": "extra200tomqtt-screenshots", "language": "en"}
# Log lines accepted although WARNING or worse: none (list a pattern here, with the reason, if
# the environment ever forces one).
ACCEPTED_LOG: Tuple["re.Pattern[str]", ...] = ()
# The deep search for a card's "entity not available" warning, through every shadow root.
FIND_WARNINGS = """(() => {
  const found = []; let cards = 0;
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      const tag = el.tagName.toLowerCase();
      if (tag === 'ha-card') cards += 1;
      if (tag === 'hui-warning' || tag === 'hui-warning-element' || tag === 'hui-error-card') {
        found.push(tag + ': ' + ((el.shadowRoot ? el.shadowRoot.textContent : '') + el.textContent).trim());
      }
      if (el.shadowRoot) walk(el.shadowRoot);
    }
  };
  walk(document);
  return JSON.stringify({cards: cards, warnings: found});
})()"""


class Checks:
    def __init__(self) -> None:
        self.results: List[Dict[str, Any]] = []

    def add(self, name: str, ok: bool, detail: Any = "") -> bool:
        self.results.append({"check": name, "ok": bool(ok), "detail": detail})
        print("%s %s %s" % ("ok  " if ok else "FAIL", name, detail if not ok or detail else ""), flush=True)
        return ok

    @property
    def failed(self) -> List[Dict[str, Any]]:
        return [r for r in self.results if not r["ok"]]


class HomeAssistant:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.token = ""
        self.tokens: Dict[str, Any] = {}
        self.ws: Optional[aiohttp.ClientWebSocketResponse] = None
        self.next_id = 1

    async def wait_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                async with self.session.get(self.url + "/api/onboarding") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("Home Assistant did not answer at %s" % self.url)
            await asyncio.sleep(1)

    async def onboard(self) -> None:
        async with self.session.post(self.url + "/api/onboarding/users", json=dict(USER, client_id=CLIENT_ID)) as r:
            code = (await r.json())["auth_code"]
        form = {"grant_type": "authorization_code", "code": code, "client_id": CLIENT_ID}
        async with self.session.post(self.url + "/auth/token", data=form) as r:
            self.tokens = await r.json()
        self.token = self.tokens["access_token"]
        # The other onboarding steps are marked done in .storage/onboarding before the start
        # (screenshots.sh): the core_config step would add integrations that go to the internet
        # (weather, radio), which a loopback-only Home Assistant can only log errors about.

    @property
    def auth(self) -> Dict[str, str]:
        return {"Authorization": "Bearer " + self.token}

    async def rest(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(method, self.url + path, json=body, headers=self.auth) as r:
            text = await r.text()
            if r.status >= 400:
                raise RuntimeError("%s %s: %d %s" % (method, path, r.status, text))
            return json.loads(text) if text else None

    async def add_mqtt(self, port: int) -> Dict[str, Any]:
        flow = await self.rest("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        while flow.get("type") == "form":
            data = {"broker": "127.0.0.1", "port": port} if flow.get("step_id") == "broker" else {}
            flow = await self.rest("POST", "/api/config/config_entries/flow/" + flow["flow_id"], data)
        return flow

    async def connect_ws(self) -> None:
        self.ws = await self.session.ws_connect(self.url + "/api/websocket", max_msg_size=0)
        await self.ws.receive_json()  # auth_required
        await self.ws.send_json({"type": "auth", "access_token": self.token})
        reply = await self.ws.receive_json()
        if reply.get("type") != "auth_ok":
            raise RuntimeError("websocket auth: %s" % reply)

    async def call(self, kind: str, **fields: Any) -> Any:
        assert self.ws is not None
        ident = self.next_id
        self.next_id += 1
        await self.ws.send_json(dict(fields, id=ident, type=kind))
        while True:
            reply = await self.ws.receive_json()
            if reply.get("id") == ident and reply.get("type") == "result":
                if not reply.get("success"):
                    raise RuntimeError("%s: %s" % (kind, reply.get("error")))
                return reply.get("result")


class Browser:
    """Headless Chromium over the DevTools protocol (one page)."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self.session = session
        self.port = port
        self.ws: Optional[aiohttp.ClientWebSocketResponse] = None
        self.next_id = 1

    async def open(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                async with self.session.get("http://127.0.0.1:%d/json/list" % self.port) as r:
                    pages = [t for t in await r.json() if t.get("type") == "page"]
                if pages:
                    break
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("no Chromium DevTools on port %d" % self.port)
            await asyncio.sleep(0.5)
        self.ws = await self.session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        await self.send("Page.enable")
        await self.send("Runtime.enable")

    async def send(self, method: str, **params: Any) -> Dict[str, Any]:
        assert self.ws is not None
        ident = self.next_id
        self.next_id += 1
        await self.ws.send_json({"id": ident, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json()
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError("%s: %s" % (method, message["error"]))
                return message.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    async def goto(self, url: str, settle: float) -> None:
        await self.send("Page.navigate", url=url)
        await asyncio.sleep(settle)

    async def screenshot(self, path: str, width: int, height: int) -> None:
        await self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        await asyncio.sleep(1.5)
        shot = await self.send("Page.captureScreenshot", format="png")
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(shot["data"]))


async def wait_for(predicate: Any, timeout: float, step: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(step)


async def run(args: argparse.Namespace) -> int:
    checks = Checks()
    with open(args.dashboard, encoding="utf-8") as handle:
        dashboard = yaml.safe_load(handle)
    used = set(re.findall(r"(?<![a-z_])(?:binary_)?sensor\.[a-z0-9_]+", json.dumps(dashboard)))
    async with aiohttp.ClientSession() as session:
        ha = HomeAssistant(session, args.url)
        await ha.wait_up(args.timeout)
        await ha.onboard()
        flow = await ha.add_mqtt(args.broker_port)
        checks.add("MQTT integration added", flow.get("type") == "create_entry", flow.get("type"))
        await ha.connect_ws()

        async def ours() -> List[Dict[str, Any]]:
            entities = await ha.call("config/entity_registry/list")
            return [e for e in entities if e.get("platform") == "mqtt"]

        async def all_there() -> bool:
            return len(await ours()) >= args.entities

        checks.add("the daemon announced", args.devices > 0 and args.entities > 0, (args.devices, args.entities))
        await wait_for(all_there, args.timeout)
        entities = await ours()
        devices = [
            d for d in await ha.call("config/device_registry/list") if any(e.get("device_id") == d["id"] for e in entities)
        ]
        checks.add("devices", len(devices) == args.devices, "%d (expected %d)" % (len(devices), args.devices))
        checks.add("entities", len(entities) == args.entities, "%d (expected %d)" % (len(entities), args.entities))
        ids = {e["entity_id"] for e in entities}
        platforms = sorted({e["entity_id"].split(".")[0] for e in entities})
        checks.add("platforms", platforms == ["binary_sensor", "sensor"], platforms)
        checks.add("the dashboard's entities exist", used <= ids, sorted(used - ids))
        names = sorted(d.get("name_by_user") or d.get("name") or "" for d in devices)
        checks.add("device names unique", len(set(names)) == len(names), names)

        async def states() -> Dict[str, Dict[str, Any]]:
            return {s["entity_id"]: s for s in await ha.rest("GET", "/api/states")}

        async def dashboard_live() -> bool:
            now = await states()
            return all(now.get(e, {}).get("state") not in (None, "unavailable") for e in used)

        live = await wait_for(dashboard_live, args.timeout)
        now = await states()
        checks.add(
            "dashboard entities available", live, sorted(e for e in used if now.get(e, {}).get("state") in (None, "unavailable"))
        )

        await ha.call(
            "lovelace/dashboards/create",
            url_path=DASHBOARD,
            title=dashboard.get("title", "Batteries"),
            icon="mdi:home-battery",
            mode="storage",
            show_in_sidebar=True,
            require_admin=False,
        )
        await ha.call("lovelace/config/save", url_path=DASHBOARD, config=dashboard)
        prefix = args.bank_id + "_bank_"
        await ha.call(
            "energy/save_prefs",
            energy_sources=[
                {
                    "type": "battery",
                    "stat_energy_from": "sensor.%senergy_discharged" % prefix,
                    "stat_energy_to": "sensor.%senergy_charged" % prefix,
                    "stat_rate": "sensor.%spower" % prefix,
                }
            ],
            device_consumption=[],
        )

        # The recorder compiles statistics every 5 minutes; until then Energy reports them missing.
        async def energy_issues() -> List[Any]:
            validation = await ha.call("energy/validate")
            found = [i for source in validation.get("energy_sources", []) for i in source]
            return found + [i for source in validation.get("device_consumption", []) for i in source]

        issues = await energy_issues()
        if args.energy_wait and any(i.get("type") == "statistics_not_defined" for i in issues):
            print("     waiting for the recorder's 5-minute statistics", flush=True)
            deadline = time.monotonic() + 400
            while issues and time.monotonic() < deadline:
                await asyncio.sleep(10)
                issues = await energy_issues()
        checks.add("Energy validation clean", not issues, issues)
        statistics = await ha.call("recorder/validate_statistics")
        ours = {k: v for k, v in statistics.items() if args.bank_id in k}
        checks.add("recorder statistics clean", not ours, ours)

        if args.cdp_port:
            browser = Browser(session, args.cdp_port)
            await browser.open()
            await browser.goto(args.url + "/", 3)
            hass_tokens = dict(
                ha.tokens,
                hassUrl=args.url,
                clientId=CLIENT_ID,
                expires=int(time.time() * 1000) + ha.tokens.get("expires_in", 1800) * 1000,
            )
            await browser.evaluate("localStorage.setItem('hassTokens', %s); true" % json.dumps(json.dumps(hass_tokens)))
            battery_device = next(
                (d for d in sorted(devices, key=lambda d: d.get("name") or "") if d.get("via_device_id")), devices[0]
            )
            cards = {"/%s/%s" % (DASHBOARD, view["path"]): len(view["cards"]) for view in dashboard["views"]}
            shots = (
                ("dashboard-bank.png", "/%s/bank" % DASHBOARD, 1280, 1400),
                ("dashboard-batteries.png", "/%s/batteries" % DASHBOARD, 1280, 1400),
                ("dashboard-cells.png", "/%s/cells" % DASHBOARD, 1280, 1000),
                ("device-battery.png", "/config/devices/device/%s" % battery_device["id"], 1280, 1900),
            )
            for name, path, width, height in shots:
                await browser.send(
                    "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
                )
                await browser.goto(args.url + path, args.settle)
                found = json.loads(await browser.evaluate(FIND_WARNINGS) or "{}")
                if path in cards:
                    checks.add(
                        "%s renders its %d cards without warnings" % (path, cards[path]),
                        found.get("cards", 0) >= cards[path] and not found.get("warnings"),
                        found,
                    )
                await browser.screenshot(os.path.join(args.out, name), width, height)
                checks.add("screenshot %s" % name, os.path.getsize(os.path.join(args.out, name)) > 10000)

    problems = []
    with open(args.log, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if re.search(r" (WARNING|ERROR|CRITICAL) ", line) and not any(p.search(line) for p in ACCEPTED_LOG):
                problems.append(line.strip()[:400])
    checks.add("Home Assistant's log has no warning or error", not problems, problems)
    with open(os.path.join(args.out, "report.json"), "w", encoding="utf-8") as handle:
        json.dump(checks.results, handle, indent=1)
    return 1 if checks.failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--broker-port", type=int, required=True)
    parser.add_argument("--cdp-port", type=int, default=0, help="Chromium DevTools port; 0 = no screenshots")
    parser.add_argument("--dashboard", required=True)
    parser.add_argument("--log", required=True, help="Home Assistant's log file")
    parser.add_argument("--out", required=True)
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--entities", type=int, required=True)
    parser.add_argument("--bank-id", default="pylontech")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--settle", type=float, default=8.0, help="seconds a page gets to render")
    parser.add_argument("--energy-wait", type=int, default=1, help="1: wait for the first statistics (<= 6 min)")
    args = parser.parse_args()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
