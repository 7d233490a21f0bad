/* camlens slide viewer: the slide in OpenSeadragon with one heatmap layer on top.
 *
 * The page holds its data as JSON in <script type="application/json" id="viewer-data">:
 *   slide:  OpenSeadragon's inline Deep Zoom tile source of the slide
 *   layers: [{class, method, source, colors, labels, note}] heatmaps, each a tile source
 *   opacity: the opacity a page opens with when its URL does not say
 * The state (class, method, opacity) lives in the URL hash, so a link opens the same view:
 *   viewer.html#class=tumour&method=hirescam&opacity=0.5
 * Heatmaps are added to the viewer the first time they are shown and then only hidden
 * (opacity 0, which OpenSeadragon neither draws nor loads), so switching back is instant.
 * For tests, <body> carries data-layer, data-opacity, data-tiles-loaded, data-tiles-failed,
 * data-layer-loaded and data-image-rect (the slide's box in page pixels: x,y,width,height).
 * User strings only ever reach the page through textContent and option values. */
(function () {
  "use strict";

  var data = JSON.parse(document.getElementById("viewer-data").textContent);
  var body = document.body;
  var classSelect = document.getElementById("class-select");
  var methodSelect = document.getElementById("method-select");
  var opacityInput = document.getElementById("opacity");
  var opacityValue = document.getElementById("opacity-value");
  var bar = document.getElementById("colourbar");
  var tickLow = document.getElementById("tick-low");
  var tickHigh = document.getElementById("tick-high");
  var note = document.getElementById("layer-note");
  var message = document.getElementById("viewer-message");

  var classes = [];
  var methodsOf = {};
  data.layers.forEach(function (layer) {
    if (!Object.prototype.hasOwnProperty.call(methodsOf, layer.class)) {
      methodsOf[layer.class] = [];
      classes.push(layer.class);
    }
    methodsOf[layer.class].push(layer.method);
  });

  function find(cls, method) {
    for (var i = 0; i < data.layers.length; i += 1) {
      if (data.layers[i].class === cls && data.layers[i].method === method) {
        return data.layers[i];
      }
    }
    return null;
  }

  function fill(select, names) {
    while (select.firstChild) {
      select.removeChild(select.firstChild);
    }
    names.forEach(function (name) {
      var option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      select.appendChild(option);
    });
  }

  /* The state asked for (by the hash, or a default), made valid. */
  function resolve(cls, method, opacity) {
    var state = { cls: null, method: null, opacity: data.opacity };
    if (classes.length) {
      state.cls = classes.indexOf(cls) >= 0 ? cls : classes[0];
      var methods = methodsOf[state.cls];
      state.method = methods.indexOf(method) >= 0 ? method : methods[0];
    }
    var number = parseFloat(opacity);
    if (isFinite(number)) {
      state.opacity = Math.min(1, Math.max(0, number));
    }
    return state;
  }

  function fromHash() {
    var params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
    return resolve(params.get("class"), params.get("method"), params.get("opacity"));
  }

  var state = fromHash();
  var items = {}; /* layer key -> TiledImage, once added */
  var adding = {}; /* layer key -> true while being added */
  var tilesLoaded = 0;
  var tilesFailed = 0;
  var methodsShownFor; /* the class whose methods the method <select> lists */

  function key(cls, method) {
    return JSON.stringify([cls, method]);
  }

  function writeHash() {
    var params = new URLSearchParams();
    if (state.cls !== null) {
      params.set("class", state.cls);
      params.set("method", state.method);
    }
    params.set("opacity", String(state.opacity));
    var hash = "#" + params.toString();
    if (window.location.hash !== hash) {
      try {
        window.history.replaceState(null, "", hash);
      } catch (error) {
        window.location.hash = hash;
      }
    }
  }

  function showScale(layer) {
    if (!layer) {
      bar.style.background = "none";
      tickLow.textContent = "";
      tickHigh.textContent = "";
      note.textContent = "";
      return;
    }
    bar.style.background = "linear-gradient(to right, " + layer.colors.join(", ") + ")";
    tickLow.textContent = layer.labels[0];
    tickHigh.textContent = layer.labels[2];
    note.textContent = layer.note;
  }

  function markCurrentRow() {
    var rows = document.querySelectorAll("tr[data-class]");
    for (var i = 0; i < rows.length; i += 1) {
      var row = rows[i];
      var same = row.getAttribute("data-class") === state.cls &&
        (!row.hasAttribute("data-method") || row.getAttribute("data-method") === state.method);
      row.classList.toggle("current", same);
    }
  }

  /* Make the page show `state`: controls, colour bar, hash, and the one visible heatmap. */
  function apply() {
    if (methodsShownFor !== state.cls) {
      fill(methodSelect, state.cls === null ? [] : methodsOf[state.cls]);
      methodsShownFor = state.cls;
    }
    classSelect.value = state.cls === null ? "" : state.cls;
    methodSelect.value = state.method === null ? "" : state.method;
    opacityInput.value = String(state.opacity);
    opacityValue.textContent = Math.round(state.opacity * 100) + "%";
    var layer = state.cls === null ? null : find(state.cls, state.method);
    showScale(layer);
    markCurrentRow();
    body.setAttribute("data-layer", layer ? layer.class + "/" + layer.method : "");
    body.setAttribute("data-opacity", String(state.opacity));
    body.setAttribute("data-layer-loaded", "false");
    writeHash();
    var wanted = layer ? key(layer.class, layer.method) : null;
    Object.keys(items).forEach(function (name) {
      items[name].setOpacity(name === wanted ? state.opacity : 0);
    });
    if (wanted !== null && !items[wanted] && !adding[wanted] && viewer.world.getItemCount()) {
      adding[wanted] = true;
      viewer.addTiledImage({
        tileSource: layer.source,
        x: 0,
        y: 0,
        width: 1,
        opacity: 0,
        success: function (event) {
          delete adding[wanted];
          items[wanted] = event.item;
          event.item.addHandler("fully-loaded-change", function (change) {
            if (items[key(state.cls, state.method)] === event.item) {
              body.setAttribute("data-layer-loaded", String(change.fullyLoaded));
            }
          });
          apply();
        },
        error: function () {
          delete adding[wanted];
          showMessage("Could not open the heatmap " + layer.class + " / " + layer.method + ".");
        }
      });
    } else if (wanted !== null && items[wanted] && items[wanted].getFullyLoaded()) {
      body.setAttribute("data-layer-loaded", "true");
    }
    viewer.forceRedraw();
  }

  function showMessage(text) {
    message.textContent = text;
  }

  function writeImageRect() {
    var slide = viewer.world.getItemAt(0);
    if (!slide) {
      return;
    }
    var box = viewer.element.getBoundingClientRect();
    var rect = viewer.viewport.viewportToViewerElementRectangle(slide.getBounds(true));
    var values = [
      box.left + window.scrollX + rect.x,
      box.top + window.scrollY + rect.y,
      rect.width,
      rect.height
    ];
    body.setAttribute("data-image-rect", values.map(function (value) {
      return value.toFixed(1);
    }).join(","));
  }

  var viewer = OpenSeadragon({
    element: document.getElementById("viewer"),
    drawer: "canvas",
    tileSources: data.slide,
    showNavigationControl: false,
    showNavigator: true,
    navigatorPosition: "BOTTOM_RIGHT",
    crossOriginPolicy: false,
    loadTilesWithAjax: false,
    visibilityRatio: 0.2,
    minZoomImageRatio: 0.5,
    maxZoomPixelRatio: 4,
    gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: true }
  });

  viewer.addHandler("tile-loaded", function () {
    tilesLoaded += 1;
    body.setAttribute("data-tiles-loaded", String(tilesLoaded));
  });
  viewer.addHandler("tile-load-failed", function () {
    tilesFailed += 1;
    body.setAttribute("data-tiles-failed", String(tilesFailed));
  });
  viewer.addHandler("open-failed", function () {
    showMessage("Could not open the slide's tiles (are the files next to this page?).");
  });
  viewer.addHandler("open", function () {
    writeImageRect();
    apply();
  });
  viewer.addHandler("animation-finish", writeImageRect);
  viewer.addHandler("resize", writeImageRect);

  fill(classSelect, classes);
  classSelect.addEventListener("change", function () {
    state = resolve(classSelect.value, state.method, state.opacity);
    apply();
  });
  methodSelect.addEventListener("change", function () {
    state = resolve(state.cls, methodSelect.value, state.opacity);
    apply();
  });
  opacityInput.addEventListener("input", function () {
    state = resolve(state.cls, state.method, opacityInput.value);
    apply();
  });
  window.addEventListener("hashchange", function () {
    state = fromHash();
    apply();
  });
  if (!classes.length) {
    classSelect.disabled = true;
    methodSelect.disabled = true;
    opacityInput.disabled = true;
  }
  apply();
})();
