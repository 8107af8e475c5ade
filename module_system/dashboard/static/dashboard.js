// Live updates: while something on the page runs (an element with data-live="<ms>"), fetch
// the page's main part again (?fragment=1) and swap it in. The page works without this.
(function () {
  "use strict";
  const main = document.getElementById("main");
  const stamp = document.getElementById("live-stamp");
  if (!main) return;

  function liveDelay() {
    const live = main.querySelector("[data-live]");
    return live ? Math.max(500, Number(live.dataset.live) || 1500) : 0;
  }

  function fragmentUrl() {
    const url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    return url;
  }

  function swap(html) {
    // Keep what the reader opened (validator messages, the log) open across updates.
    const open = Array.from(main.querySelectorAll("details[id]")).map((d) => [d.id, d.open]);
    main.innerHTML = html;
    for (const [id, wasOpen] of open) {
      const details = document.getElementById(id);
      if (details) details.open = wasOpen;
    }
    if (stamp) stamp.textContent = "updated " + new Date().toISOString().slice(11, 19);
  }

  async function refresh() {
    if (!document.hidden) {
      try {
        const response = await fetch(fragmentUrl(), {
          credentials: "same-origin",
          cache: "no-store",
          headers: { Accept: "text/html" },
        });
        if (response.redirected || !response.ok) return; // signed out or gone: stop
        swap(await response.text());
      } catch (error) {
        // the dashboard is restarting or the network blinked: try again next time
      }
    }
    schedule();
  }

  function schedule() {
    const delay = liveDelay();
    if (delay) window.setTimeout(refresh, delay);
  }

  schedule();
})();
