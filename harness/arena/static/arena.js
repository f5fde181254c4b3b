// Thin client of the arena's JSON API: vote on the shown pair, reveal the names, load the next pair.
// Untrusted text (prompts, names) only ever goes through textContent, never innerHTML.
"use strict";

(function () {
  const root = document.getElementById("arena");
  const buttons = Array.from(document.querySelectorAll(".choices button[data-outcome]"));
  const next = document.getElementById("next");
  const skipButton = document.getElementById("skip");
  const status = document.getElementById("status");
  const counter = document.getElementById("votes-cast");
  const zoom = document.getElementById("zoom");
  const zoomFrame = document.getElementById("zoom-frame");
  const zoomTitle = document.getElementById("zoom-title");
  const ZOOM_KEYS = { "z": "left", "Z": "left", "x": "right", "X": "right" };
  const KEYS = {
    "1": "left", "ArrowLeft": "left",
    "2": "right", "ArrowRight": "right",
    "3": "tie", "ArrowUp": "tie",
    "4": "both_bad", "ArrowDown": "both_bad",
  };
  const state = { token: root.dataset.token, voted: false, busy: false, shownAt: performance.now() };

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  function setImage(img, view) {
    img.src = view.url;
    img.width = view.width;
    img.height = view.height;
  }

  function contender(c) {
    return c.target + " (" + c.model + ", " + c.provider + ")";
  }

  async function problem(response) {
    try {
      const body = await response.json();
      return typeof body.detail === "string" ? body.detail : response.statusText;
    } catch (e) {
      return response.statusText || "request failed";
    }
  }

  function showNext() {
    skipButton.hidden = true;
    next.hidden = false;
    next.focus();
  }

  function setCounter(votes) {
    if (typeof votes === "number" && votes >= 0) counter.textContent = String(votes);
  }

  // Zoom: the side's own blind image, large, in a modal dialog (Esc or Close shuts it; focus returns).
  let zoomOpener = null;

  function openZoom(side, opener) {
    const source = document.getElementById(side + "-img");
    showZoom(source.getAttribute("src"), side === "left" ? "Left image" : "Right image", opener);
  }

  function showZoom(src, title, opener) {
    const img = document.createElement("img");
    img.src = src;
    img.alt = title + ", enlarged";
    zoomFrame.replaceChildren(img);
    zoomTitle.textContent = title;
    zoomOpener = opener || document.activeElement;
    zoom.showModal();
    document.getElementById("zoom-close").focus();
  }

  // The close event arrives a task after the dialog shut: by then it may have been opened again.
  zoom.addEventListener("close", function () {
    if (zoom.open) return;
    zoomFrame.replaceChildren();
    if (zoomOpener && typeof zoomOpener.focus === "function") zoomOpener.focus();
    zoomOpener = null;
  });
  document.getElementById("zoom-close").addEventListener("click", function () { zoom.close(); });
  zoom.addEventListener("click", function (event) { if (event.target === zoom) zoom.close(); });
  document.querySelectorAll("button.zoom").forEach(function (b) {
    b.addEventListener("click", function () { openZoom(b.dataset.zoom, b); });
  });
  ["left", "right"].forEach(function (side) {
    document.getElementById(side + "-img").addEventListener("click", function () { openZoom(side, null); });
  });
  // A turn's image (sequence pairs) enlarges on click too, titled by its side and turn.
  document.getElementById("turn-list").addEventListener("click", function (event) {
    if (event.target.tagName === "IMG") showZoom(event.target.getAttribute("src"), event.target.alt, null);
  });

  async function skip() {
    if (state.voted || state.busy) return;
    state.busy = true;
    buttons.forEach(function (b) { b.disabled = true; });
    skipButton.disabled = true;
    say("Skipping this pair…");
    let response;
    try {
      response = await fetch("/api/skip", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify({ token: state.token, client_ms: Math.round(performance.now() - state.shownAt) }),
      });
    } catch (e) {
      state.busy = false;
      buttons.forEach(function (b) { b.disabled = false; });
      skipButton.disabled = false;
      say("Network error: the pair was not skipped. Try again.", true);
      return;
    }
    state.busy = false;
    skipButton.disabled = false;
    if (response.status === 429) {
      buttons.forEach(function (b) { b.disabled = false; });
      say(await problem(response), true);
      return;
    }
    state.voted = true;
    if (!response.ok) {
      say(await problem(response), true);
      showNext();
      return;
    }
    setCounter((await response.json()).votes_cast);
    await loadNext("Skipped. Here is another pair.");
  }

  async function vote(outcome) {
    if (state.voted || state.busy) return;
    state.busy = true;
    buttons.forEach(function (b) { b.disabled = true; });
    say("Sending your vote…");
    let response;
    try {
      response = await fetch("/api/vote", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify({
          token: state.token, outcome: outcome, client_ms: Math.round(performance.now() - state.shownAt),
        }),
      });
    } catch (e) {
      state.busy = false;
      buttons.forEach(function (b) { b.disabled = false; });
      say("Network error: your vote was not sent. Try again.", true);
      return;
    }
    state.busy = false;
    if (response.status === 429) {
      buttons.forEach(function (b) { b.disabled = false; });
      say(await problem(response), true);
      return;
    }
    state.voted = true;
    if (!response.ok) {
      say(await problem(response), true);
      showNext();
      return;
    }
    const reveal = await response.json();
    setCounter(reveal.votes_cast);
    buttons.forEach(function (b) { b.classList.toggle("picked", b.dataset.outcome === outcome); });
    const leftName = document.getElementById("left-name");
    const rightName = document.getElementById("right-name");
    leftName.textContent = contender(reveal.left);
    rightName.textContent = contender(reveal.right);
    leftName.hidden = false;
    rightName.hidden = false;
    document.getElementById("left").classList.toggle("chosen", outcome === "left");
    document.getElementById("right").classList.toggle("chosen", outcome === "right");
    say("Vote recorded. Thank you!");
    showNext();
  }

  // A sequence pair: one row per turn, its instruction then both sides' images after that turn.
  function renderTurns(turns) {
    const list = document.getElementById("turn-list");
    list.replaceChildren();
    (turns || []).forEach(function (t) {
      const item = document.createElement("li");
      item.className = "turn";
      const instruction = document.createElement("p");
      instruction.className = "instruction";
      const number = document.createElement("span");
      number.className = "turn-no";
      number.textContent = "Turn " + t.turn;
      const text = document.createElement("span");
      text.className = "turn-text";
      text.textContent = t.instruction;
      instruction.append(number, " ", text);
      const images = document.createElement("div");
      images.className = "turn-images";
      [["Left", t.left], ["Right", t.right]].forEach(function (side) {
        const figure = document.createElement("figure");
        const img = document.createElement("img");
        setImage(img, side[1]);
        img.alt = side[0] + ", turn " + t.turn;
        const caption = document.createElement("figcaption");
        caption.textContent = side[0];
        figure.append(img, caption);
        images.append(figure);
      });
      item.append(instruction, images);
      list.append(item);
    });
    const sequence = Boolean(turns && turns.length);
    document.getElementById("turns").hidden = !sequence;
    document.getElementById("headline").textContent = sequence ? "Which sequence is better?" : "Which image is better?";
  }

  function render(pair) {
    state.token = pair.token;
    renderTurns(pair.turns);
    document.getElementById("title").textContent = pair.challenge.title;
    document.getElementById("kind").textContent = pair.challenge.kind;
    document.getElementById("category").textContent = pair.challenge.category;
    document.getElementById("prompt").textContent = pair.challenge.prompt;
    const refs = document.getElementById("references");
    refs.replaceChildren();
    pair.challenge.references.forEach(function (ref) {
      const figure = document.createElement("figure");
      const img = document.createElement("img");
      setImage(img, ref);
      img.alt = ref.label;
      const caption = document.createElement("figcaption");
      caption.textContent = ref.label;
      figure.append(img, caption);
      refs.append(figure);
    });
    refs.hidden = pair.challenge.references.length === 0;
    setImage(document.getElementById("left-img"), pair.left);
    setImage(document.getElementById("right-img"), pair.right);
    ["left", "right"].forEach(function (side) {
      const name = document.getElementById(side + "-name");
      name.textContent = "";
      name.hidden = true;
      document.getElementById(side).classList.remove("chosen");
    });
    buttons.forEach(function (b) { b.disabled = false; b.classList.remove("picked"); });
    next.hidden = true;
    skipButton.hidden = false;
    state.voted = false;
    state.shownAt = performance.now();
    say("");
  }

  async function loadNext(message) {
    if (state.busy) return;
    state.busy = true;
    say("Loading the next pair…");
    try {
      const response = await fetch("/api/pair", { credentials: "same-origin", headers: { "Accept": "application/json" } });
      if (!response.ok) {
        say(await problem(response), true);
        return;
      }
      render(await response.json());
      if (typeof message === "string") say(message);
      buttons[0].focus();
    } catch (e) {
      say("Network error: could not load a new pair.", true);
    } finally {
      state.busy = false;
    }
  }

  buttons.forEach(function (b) {
    b.addEventListener("click", function () { vote(b.dataset.outcome); });
  });
  next.addEventListener("click", function () { loadNext(); });
  skipButton.addEventListener("click", skip);
  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || zoom.open) return;
    if (Object.prototype.hasOwnProperty.call(ZOOM_KEYS, event.key)) {
      event.preventDefault();
      openZoom(ZOOM_KEYS[event.key], null);
    } else if (!state.voted && (event.key === "s" || event.key === "S")) {
      event.preventDefault();
      skip();
    } else if (!state.voted && Object.prototype.hasOwnProperty.call(KEYS, event.key)) {
      event.preventDefault();
      vote(KEYS[event.key]);
    } else if (state.voted && (event.key === "n" || event.key === "N" ||
               (event.key === "Enter" && event.target.tagName !== "BUTTON"))) {
      event.preventDefault();
      loadNext();
    }
  });
})();
