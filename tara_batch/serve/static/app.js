// tara-batch search page: plain JS, no build step, no CDN. Talks to /api/* of the same server.
"use strict";
const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token");
let offset = 0;
let segmented = false;

function withToken(url) {
  if (!token) return url;
  const [path, frag] = url.split("#");
  const sep = path.includes("?") ? "&" : "?";
  return path + sep + "token=" + encodeURIComponent(token) + (frag ? "#" + frag : "");
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers["Authorization"] = "Bearer " + token;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail ? JSON.stringify(body.detail) : response.statusText);
  return body;
}

function mode() { return document.querySelector("input[name=mode]:checked").value; }

function filters() {
  const out = {};
  for (const id of ["duration_min", "duration_max", "window_start_min", "window_end_max"]) {
    const v = $(id).value; if (v !== "") out[id] = Number(v);
  }
  for (const id of ["uri_prefix", "uri_glob", "created_after", "created_before"]) {
    const v = $(id).value.trim(); if (v) out[id] = v;
  }
  return out;
}

function setState(text, isError = false) {
  $("state").textContent = text;
  $("state").className = isError ? "error" : "";
}

function fmt(x, digits = 1) { return x === null || x === undefined ? "-" : Number(x).toFixed(digits); }

function render(results) {
  const grid = $("results");
  grid.replaceChildren();
  results.forEach((r, i) => {
    const card = document.createElement("article");
    card.className = "card";
    card.tabIndex = 0;
    card.setAttribute("role", "button");
    const when = r.start !== null && r.start !== undefined ? `moment ${fmt(r.start)}–${fmt(r.end)} s` : `${fmt(r.duration)} s`;
    card.setAttribute("aria-label", `result ${offset + i + 1}, score ${fmt(r.score, 3)}, ${when}`);
    const img = document.createElement("img");
    img.src = withToken(r.thumbnail_url);
    img.alt = "thumbnail of " + r.uri;
    img.loading = "lazy";
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.innerHTML = `<strong>#${offset + i + 1}</strong> score <span class="score"></span> · <span class="when"></span><div class="uri"></div>`;
    meta.querySelector(".score").textContent = fmt(r.score, 3);
    meta.querySelector(".when").textContent = when;
    meta.querySelector(".uri").textContent = r.uri;
    const use = document.createElement("button");
    use.type = "button"; use.className = "use"; use.textContent = "Use as query";
    use.addEventListener("click", (e) => { e.stopPropagation(); $("video-id").value = r.video_id; if (mode() === "text") document.querySelector("input[value=video]").click(); });
    meta.appendChild(use);
    card.append(img, meta);
    card.dataset.videoId = r.video_id;
    card.dataset.start = r.start ?? 0;
    const open = () => play(r);
    card.addEventListener("click", open);
    card.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(); } });
    grid.appendChild(card);
  });
}

function play(r) {
  const video = $("video");
  video.src = withToken(r.media_url);  // a moment plays from its window: media fragment #t=start,end
  $("player-title").textContent = r.uri;
  $("player").showModal();
  video.play().catch(() => {});
}

async function search(event) {
  if (event) { event.preventDefault(); offset = 0; }
  const k = Number($("k").value) || 12;
  const m = mode();
  const text = $("text").value.trim();
  setState("Searching…");
  $("results").setAttribute("aria-busy", "true");
  try {
    let data;
    const upload = $("upload").files[0];
    if (m !== "text" && upload && !$("video-id").value.trim()) {
      const form = new FormData();
      form.append("file", upload); form.append("mode", m); form.append("k", k); form.append("offset", offset);
      if (m === "composed") form.append("text", text);
      form.append("filters", JSON.stringify(filters()));
      form.append("group_by_video", $("group").checked);
      data = await api("/api/search/upload", { method: "POST", body: form });
    } else {
      const body = { mode: m, k, offset, filters: filters(), group_by_video: $("group").checked };
      if (m !== "video") body.text = text;
      if (m !== "text") body.video_id = $("video-id").value.trim() || null;
      data = await api("/api/search", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    }
    render(data.results);
    const t = data.timings_ms;
    setState(data.results.length ? `${data.results.length} results (embed ${fmt(t.embed)} ms, search ${fmt(t.search)} ms${data.cached ? ", cached" : ""})` : "No results.");
    $("prev").disabled = offset === 0;
    $("next").disabled = data.results.length < k;
  } catch (err) {
    $("results").replaceChildren();
    setState("Error: " + err.message, true);
  } finally {
    $("results").removeAttribute("aria-busy");
  }
}

function syncMode() {
  const m = mode();
  $("source-row").hidden = m === "text";
  $("text").disabled = m === "video";
  $("text").placeholder = m === "composed" ? "the edit, e.g. make it go the other way" : "a person closes the door";
}

document.querySelectorAll("input[name=mode]").forEach((el) => el.addEventListener("change", syncMode));
$("query").addEventListener("submit", search);
$("prev").addEventListener("click", () => { offset = Math.max(0, offset - (Number($("k").value) || 12)); search(); });
$("next").addEventListener("click", () => { offset += Number($("k").value) || 12; search(); });
$("close").addEventListener("click", () => $("player").close());
$("player").addEventListener("close", () => { $("video").pause(); $("video").removeAttribute("src"); });

api("/api/status").then((st) => {
  segmented = !!st.segments;
  document.querySelectorAll(".seg").forEach((el) => { el.hidden = !segmented; });
  $("index-info").textContent = `${st.index || ""} · version ${st.serving || "?"}${segmented ? " · moments" : ""}`;
}).catch((err) => setState("Cannot reach the index: " + err.message, true));
syncMode();
