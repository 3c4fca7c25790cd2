/* Gateway console: vanilla JS, no dependencies. Built for a strict CSP:
 * no inline scripts/styles, DOM built with createElement/textContent only. */
(function () {
  'use strict';

  var SECTIONS = ['remotes', 'syncs', 'sessions', 'health'];
  var SVG_NS = 'http://www.w3.org/2000/svg';
  var stopped = false; // set once we redirect to the login page

  // ---------------------------------------------------------------- helpers

  function $(sel, root) { return (root || document).querySelector(sel); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === 'text') node.textContent = v;
        else if (k === 'className') node.className = v;
        else node.setAttribute(k, v === true ? '' : String(v));
      });
    }
    if (children) {
      children.forEach(function (c) {
        if (c === null || c === undefined) return;
        node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
      });
    }
    return node;
  }

  function svgEl(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    return node;
  }

  function setText(node, text) {
    text = text === null || text === undefined ? '' : String(text);
    if (node.textContent !== text) node.textContent = text;
  }

  function setAttr(node, name, value) {
    value = String(value);
    if (node.getAttribute(name) !== value) node.setAttribute(name, value);
  }

  function setHidden(node, hidden) {
    if (node.hidden !== !!hidden) node.hidden = !!hidden;
  }

  function pad(n, w) { n = String(n); while (n.length < (w || 2)) n = '0' + n; return n; }

  function fmtBytes(n) {
    n = Number(n) || 0;
    var neg = n < 0; if (neg) n = -n;
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    var s = i === 0 ? String(Math.round(n)) : n.toFixed(1);
    return (neg ? '-' : '') + s + ' ' + units[i];
  }

  function fmtRate(bps) { return fmtBytes(bps) + '/s'; }

  function fmtTime(value) {
    if (value === null || value === undefined || value === '') return '—';
    var d = new Date(value);
    if (isNaN(d.getTime())) return String(value);
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
      pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }

  function fmtClock(d) {
    return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }

  function fmtDuration(ms) {
    if (ms === null || ms === undefined || isNaN(ms)) return '—';
    var total = Math.max(0, Math.round(ms / 1000));
    var h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    if (h > 0) return h + 'h ' + pad(m) + 'm ' + pad(s) + 's';
    if (m > 0) return m + 'm ' + pad(s) + 's';
    return s + 's';
  }

  function fmtCount(n) { return String(Number(n) || 0); }

  function plural(n, one, many) { return n + ' ' + (n === 1 ? one : (many || one + 's')); }

  // --------------------------------------------------------------- network

  function csrfToken() {
    var m = $('meta[name="csrf-token"]');
    return m ? m.getAttribute('content') : '';
  }

  // A read-only key may look but not act: its action buttons are off.
  function canOperate() {
    var m = $('meta[name="api-scope"]');
    return !m || m.getAttribute('content') !== 'read-only';
  }

  function offForReadOnly(btn) {
    if (canOperate()) return;
    btn.disabled = true;
    btn.title = 'This needs an operator or admin key';
  }

  function ApiError(message, status, body) {
    this.message = message; this.status = status; this.body = body;
  }
  ApiError.prototype = Object.create(Error.prototype);
  ApiError.prototype.name = 'ApiError';

  function goLogin() {
    if (stopped) return;
    stopped = true;
    location.assign('/console/login');
  }

  function api(method, path) {
    var opts = { method: method, credentials: 'same-origin', headers: { 'Accept': 'application/json' } };
    if (method !== 'GET') opts.headers['X-CSRF-Token'] = csrfToken();
    return fetch(path, opts).then(function (res) {
      if (res.status === 401) {
        goLogin();
        throw new ApiError('Your session has expired; logging in again…', 401, null);
      }
      return res.text().then(function (text) {
        var body = null;
        if (text) { try { body = JSON.parse(text); } catch (e) { body = null; } }
        if (!res.ok) {
          var msg = (body && (body.error || body.title)) || ('HTTP ' + res.status + (res.statusText ? ' ' + res.statusText : ''));
          throw new ApiError(msg, res.status, body);
        }
        return body;
      });
    }, function (err) {
      throw new ApiError('Network error: ' + (err && err.message ? err.message : 'the gateway did not answer'), 0, null);
    });
  }

  function errMessage(err) {
    return (err && err.message) ? err.message : String(err);
  }

  // ------------------------------------------------------------- announcer

  var announceTimer = null;
  function announce(message) {
    var node = $('#announcer');
    if (!node) return;
    node.textContent = '';
    clearTimeout(announceTimer);
    announceTimer = setTimeout(function () { node.textContent = message; }, 50);
  }

  function showResult(node, message, isError) {
    setAttr(node, 'role', isError ? 'alert' : 'status');
    node.classList.toggle('error', !!isError);
    node.classList.toggle('ok', !isError);
    node.textContent = message;
    setHidden(node, false);
  }

  // ---------------------------------------------------------------- polling

  var pollError = null;
  function reportPoll(what, err) {
    var node = $('#poll-error');
    if (!node) return;
    if (err) {
      if (err.status === 401) return;
      setText(node, 'Could not refresh ' + what + ': ' + errMessage(err));
      setHidden(node, false);
      pollError = what;
    } else if (pollError === what) {
      setHidden(node, true);
      setText(node, '');
      pollError = null;
    }
  }

  function markUpdated() {
    setText($('#last-updated'), 'updated ' + fmtClock(new Date()));
  }

  function Poller(section, intervalMs, run, label) {
    this.section = section; this.intervalMs = intervalMs; this.run = run; this.label = label;
    this.inflight = false; this.timer = null;
  }
  Poller.prototype.tick = function () {
    var self = this;
    if (stopped || self.inflight || currentSection !== self.section) return;
    self.inflight = true;
    var p;
    try { p = Promise.resolve(self.run()); } catch (e) { p = Promise.reject(e); }
    p.then(function () {
      markUpdated();
      reportPoll(self.label, null);
    }, function (err) {
      reportPoll(self.label, err);
      if (!(err instanceof ApiError)) { console.error(err); }
    }).then(function () { self.inflight = false; });
  };
  Poller.prototype.start = function () {
    var self = this;
    if (self.timer === null) self.timer = setInterval(function () { self.tick(); }, self.intervalMs);
    self.tick();
  };
  Poller.prototype.stop = function () {
    if (this.timer !== null) { clearInterval(this.timer); this.timer = null; }
  };

  // Keep children of `parent` in the order of `nodes`, moving only what is out of place
  // (moving a node would blur a focused descendant).
  function syncOrder(parent, nodes, before) {
    var ref = parent.firstChild;
    // skip leading non-managed nodes
    nodes.forEach(function (node) {
      if (ref === node) { ref = ref.nextSibling; return; }
      parent.insertBefore(node, ref || before || null);
    });
  }

  // ---------------------------------------------------------------- remotes

  var remoteViews = new Map();
  var remoteData = new Map();
  var trustTarget = null;

  function buildRemote(name) {
    var v = { name: name, testing: false };
    v.article = el('article', { className: 'remote card', 'data-remote': name });
    var headingId = 'remote-' + Math.random().toString(36).slice(2, 10);
    v.article.setAttribute('aria-labelledby', headingId);

    v.kind = el('span', { className: 'remote-kind tag' });
    v.state = el('p', { className: 'remote-state' });
    var head = el('div', { className: 'card-head' }, [
      el('h3', { id: headingId, text: name }), v.kind
    ]);
    v.address = el('dd', { className: 'remote-address' });
    v.fingerprint = el('dd', { className: 'fingerprint' });
    v.presentedDt = el('dt', { text: 'Presented key' });
    v.presented = el('dd', { className: 'presented-fingerprint' });
    v.failures = el('dd', { className: 'failures' });
    v.totals = el('dd', { className: 'totals' });
    var facts = el('dl', { className: 'facts' }, [
      el('dt', { text: 'Address' }), v.address,
      el('dt', { text: 'Host key' }), v.fingerprint,
      v.presentedDt, v.presented,
      el('dt', { text: 'Connect failures' }), v.failures,
      el('dt', { text: 'Transferred' }), v.totals
    ]);

    v.segInUse = el('span', { className: 'seg seg-in-use' });
    v.segIdle = el('span', { className: 'seg seg-idle' });
    v.track = el('span', { className: 'pool-track' }, [v.segInUse, v.segIdle]);
    v.segWaiting = el('span', { className: 'seg seg-waiting' });
    v.pool = el('div', { className: 'pool', role: 'img' }, [v.track, v.segWaiting]);
    v.poolText = el('p', { className: 'pool-text' });
    var poolBlock = el('div', { className: 'pool-block' }, [
      el('p', { className: 'block-label', text: 'Connection pool' }), v.pool, v.poolText
    ]);

    v.chartPeak = el('span', { className: 'chart-peak' });
    v.svg = svgEl('svg', { viewBox: '0 0 600 100', preserveAspectRatio: 'none', role: 'img', focusable: 'false', class: 'chart' });
    v.gridLine = svgEl('line', { x1: 0, y1: 50, x2: 600, y2: 50, class: 'chart-grid', 'vector-effect': 'non-scaling-stroke' });
    v.readArea = svgEl('path', { class: 'chart-read-area', d: '' });
    v.readPath = svgEl('path', { class: 'chart-read', d: '', 'vector-effect': 'non-scaling-stroke' });
    v.writtenPath = svgEl('path', { class: 'chart-written', d: '', 'vector-effect': 'non-scaling-stroke' });
    v.svg.appendChild(v.gridLine); v.svg.appendChild(v.readArea);
    v.svg.appendChild(v.readPath); v.svg.appendChild(v.writtenPath);
    v.chartCaption = el('figcaption', { className: 'chart-caption' });
    v.throughput = el('figure', { className: 'throughput' }, [
      el('div', { className: 'chart-top' }, [el('span', { className: 'block-label', text: 'Throughput, last 10 minutes' }), v.chartPeak]),
      el('div', { className: 'chart-box' }, [v.svg]),
      el('div', { className: 'chart-axis', 'aria-hidden': 'true' }, [el('span', { text: '10 min ago' }), el('span', { text: 'now' })]),
      v.chartCaption
    ]);

    v.testBtn = el('button', { type: 'button', className: 'test-remote', text: 'Test' });
    v.testBtn.setAttribute('aria-label', 'Test ' + name);
    v.trustBtn = el('button', { type: 'button', className: 'trust-remote secondary', text: 'Trust host key…' });
    v.trustBtn.setAttribute('aria-label', 'Trust host key of ' + name + '…');
    v.actionResult = el('p', { className: 'action-result', role: 'status' });
    v.testReport = el('div', { className: 'test-report' });
    setHidden(v.testReport, true);

    v.testBtn.addEventListener('click', function () { runTest(v); });
    v.trustBtn.addEventListener('click', function () { openTrust(v); });
    offForReadOnly(v.testBtn);
    offForReadOnly(v.trustBtn);

    var body = el('div', { className: 'remote-body' }, [
      el('div', { className: 'remote-col' }, [facts]),
      el('div', { className: 'remote-col' }, [poolBlock]),
      el('div', { className: 'remote-col' }, [v.throughput])
    ]);
    v.article.appendChild(head);
    v.article.appendChild(v.state);
    v.article.appendChild(body);
    v.article.appendChild(el('div', { className: 'actions' }, [v.testBtn, v.trustBtn]));
    v.article.appendChild(v.actionResult);
    v.article.appendChild(v.testReport);
    return v;
  }

  function updateRemote(v, r, points) {
    var state = r.state === 'disabled' ? 'disabled' : 'enabled';
    setAttr(v.article, 'data-state', state);
    setAttr(v.article, 'data-kind', r.kind || '');
    setText(v.kind, r.kind || '?');
    setText(v.state, state === 'disabled' ? 'disabled' + (r.disabled_reason ? ': ' + r.disabled_reason : '') : 'enabled');
    setAttr(v.state, 'data-state', state);
    setText(v.address, r.address || '—');

    var isSftp = r.kind === 'sftp';
    setText(v.fingerprint, isSftp ? (r.host_key_fingerprint || 'not pinned yet') : '—');
    var hasPresented = !!r.presented_fingerprint;
    setHidden(v.presentedDt, !hasPresented);
    setHidden(v.presented, !hasPresented);
    setText(v.presented, r.presented_fingerprint || '');
    setHidden(v.trustBtn, !isSftp);

    var f = r.connect_failures || {};
    var keys = Object.keys(f).sort();
    setText(v.failures, keys.length ? keys.map(function (k) { return k + ': ' + f[k]; }).join(', ') : 'none');
    setText(v.totals, fmtBytes(r.bytes_read) + ' read, ' + fmtBytes(r.bytes_written) + ' written');

    // Pool bar.
    var inUse = Number(r.connections_in_use) || 0, idle = Number(r.connections_idle) || 0;
    var waiting = Number(r.waiters) || 0, cap = Number(r.max_connections) || 0;
    setAttr(v.pool, 'data-in-use', inUse);
    setAttr(v.pool, 'data-idle', idle);
    setAttr(v.pool, 'data-waiting', waiting);
    setAttr(v.pool, 'data-cap', cap);
    setAttr(v.pool, 'aria-label', inUse + ' in use, ' + idle + ' idle, ' + waiting + ' waiting, of ' + cap);
    var denom = Math.max(cap, inUse + idle, 1);
    var wIn = Math.min(100, inUse / denom * 100);
    var wIdle = Math.min(100 - wIn, idle / denom * 100);
    v.segInUse.style.width = wIn.toFixed(2) + '%';
    v.segIdle.style.width = wIdle.toFixed(2) + '%';
    // Waiters are drawn after the cap, on the same scale (at most half a bar).
    var waitGrow = Math.min(waiting, denom / 2);
    v.track.style.flexGrow = String(denom);
    v.segWaiting.style.flexGrow = String(waitGrow);
    setHidden(v.segWaiting, waiting === 0);
    setText(v.poolText, inUse + ' in use · ' + idle + ' idle · ' + waiting + ' waiting · cap ' + cap);
    v.pool.classList.toggle('has-waiters', waiting > 0);

    if (points !== undefined) updateChart(v, points || []);
  }

  function updateChart(v, points) {
    var last = points.length ? points[points.length - 1] : null;
    var nowRead = last ? Number(last.read_bps) || 0 : 0;
    var nowWritten = last ? Number(last.written_bps) || 0 : 0;
    var caption = 'now: ' + fmtRate(nowRead) + ' read, ' + fmtRate(nowWritten) + ' written';
    setText(v.chartCaption, caption);
    var peak = 0;
    points.forEach(function (p) { peak = Math.max(peak, Number(p.read_bps) || 0, Number(p.written_bps) || 0); });
    setText(v.chartPeak, points.length ? 'peak ' + fmtRate(peak) : 'no data yet');
    setAttr(v.svg, 'aria-label', 'Bytes per second read and written over the last 10 minutes; ' + caption + '; peak ' + fmtRate(peak));

    var maxY = peak > 0 ? peak * 1.1 : 1;
    var endT = last ? Number(last.t_ms) : Date.now();
    var startT = endT - 600000;
    function x(p) { return Math.max(0, Math.min(600, (Number(p.t_ms) - startT) / 600000 * 600)); }
    function y(val) { return 100 - (Math.max(0, Number(val) || 0) / maxY * 98) - 1; }
    function line(key) {
      var d = '';
      points.forEach(function (p, i) { d += (i ? 'L' : 'M') + x(p).toFixed(1) + ' ' + y(p[key]).toFixed(1); });
      return d;
    }
    var readD = points.length > 1 ? line('read_bps') : '';
    var writtenD = points.length > 1 ? line('written_bps') : '';
    setAttr(v.readPath, 'd', readD);
    setAttr(v.writtenPath, 'd', writtenD);
    setAttr(v.readArea, 'd', readD ? readD + 'L' + x(last).toFixed(1) + ' 100L' + x(points[0]).toFixed(1) + ' 100Z' : '');
  }

  function renderRemotes(list, throughput) {
    var series = (throughput && throughput.remotes) || {};
    var container = $('#remotes-list');
    var seen = new Set();
    var ordered = [];
    (list || []).forEach(function (r) {
      if (!r || typeof r.name !== 'string') return;
      seen.add(r.name);
      var v = remoteViews.get(r.name);
      if (!v) { v = buildRemote(r.name); remoteViews.set(r.name, v); }
      remoteData.set(r.name, r);
      // Without a throughput answer, keep the previous chart (undefined = leave as is).
      updateRemote(v, r, throughput ? (series[r.name] || []) : (v.charted ? undefined : []));
      if (throughput) v.charted = true;
      ordered.push(v.article);
    });
    remoteViews.forEach(function (v, name) {
      if (!seen.has(name)) {
        v.article.remove(); remoteViews.delete(name); remoteData.delete(name);
      }
    });
    syncOrder(container, ordered);
    setHidden($('#remotes-empty'), ordered.length > 0);
  }

  function pollRemotes() {
    var tp = api('GET', '/api/v1/throughput').catch(function (err) {
      if (err && err.status === 401) throw err;
      return null; // the chart is optional; keep the remote cards alive
    });
    return Promise.all([api('GET', '/api/v1/remotes'), tp]).then(function (res) {
      renderRemotes(res[0], res[1]);
    });
  }

  function runTest(v) {
    if (v.testing) return;
    v.testing = true;
    v.testBtn.disabled = true;
    v.testBtn.textContent = 'Testing…';
    v.testBtn.setAttribute('aria-label', 'Testing ' + v.name + '…');
    v.article.setAttribute('aria-busy', 'true');
    showResult(v.actionResult, 'Testing ' + v.name + '… (this can take up to 30 seconds)', false);
    api('POST', '/api/v1/remotes/' + encodeURIComponent(v.name) + '/test').then(function (res) {
      renderTestReport(v, res || {});
      var ok = !!(res && res.ok);
      var msg = 'Test of ' + v.name + ': ' + (ok ? 'OK' : 'FAILED') +
        (res && res.round_trip_ms !== undefined && res.round_trip_ms !== null ? ', round trip ' + res.round_trip_ms + ' ms' : '') +
        (!ok && res && res.error ? ' — ' + res.error : '');
      showResult(v.actionResult, msg, !ok);
      announce(msg);
    }, function (err) {
      var msg = 'Test of ' + v.name + ' could not run: ' + errMessage(err);
      showResult(v.actionResult, msg, true);
      announce(msg);
    }).then(function () {
      v.testing = false;
      v.testBtn.disabled = false;
      v.testBtn.textContent = 'Test';
      v.testBtn.setAttribute('aria-label', 'Test ' + v.name);
      v.article.removeAttribute('aria-busy');
    });
  }

  function renderTestReport(v, res) {
    var ok = !!res.ok;
    var report = v.testReport;
    report.textContent = '';
    report.setAttribute('data-ok', ok ? 'true' : 'false');
    report.appendChild(el('p', { className: 'test-outcome' }, [
      'Test result: ',
      el('strong', { className: ok ? 'word-ok' : 'word-bad', text: ok ? 'OK' : 'FAILED' }),
      ' at ' + fmtTime(Date.now())
    ]));
    var dl = el('dl', { className: 'test-details' });
    if (res.round_trip_ms !== undefined && res.round_trip_ms !== null) {
      dl.appendChild(el('dt', { text: 'round trip' }));
      dl.appendChild(el('dd', { text: res.round_trip_ms + ' ms' }));
    }
    (res.details || []).forEach(function (d) {
      dl.appendChild(el('dt', { text: d && d.label !== undefined ? String(d.label) : '' }));
      dl.appendChild(el('dd', { text: d && d.value !== undefined ? String(d.value) : '' }));
    });
    if (dl.childNodes.length) report.appendChild(dl);
    if (!ok && res.error) {
      report.appendChild(el('p', { className: 'test-error error' }, [el('strong', { text: 'Error: ' }), String(res.error)]));
    }
    setHidden(report, false);
  }

  // ------------------------------------------------------------ trust dialog

  function openTrust(v) {
    var dialog = $('#trust-dialog');
    var r = remoteData.get(v.name) || {};
    trustTarget = v.name;
    setText($('#trust-remote-name'), v.name);
    setText($('#trust-pinned'), r.host_key_fingerprint || 'not pinned yet');
    setText($('#trust-presented'), r.presented_fingerprint || 'read from the server when you confirm');
    var confirm = $('#trust-confirm');
    confirm.disabled = false;
    setText(confirm, 'Trust this key');
    if (typeof dialog.showModal === 'function') {
      if (!dialog.open) dialog.showModal();
    } else {
      dialog.setAttribute('open', '');
    }
    $('#trust-cancel').focus();
  }

  function closeTrust() {
    var dialog = $('#trust-dialog');
    if (dialog.open) {
      if (typeof dialog.close === 'function') dialog.close(); else dialog.removeAttribute('open');
    }
  }

  function focusTrustButton(name) {
    var v = name && remoteViews.get(name);
    if (v && !v.trustBtn.hidden) v.trustBtn.focus();
  }

  function confirmTrust() {
    var name = trustTarget;
    if (!name) { closeTrust(); return; }
    var confirm = $('#trust-confirm');
    confirm.disabled = true;
    setText(confirm, 'Trusting…');
    api('POST', '/api/v1/remotes/' + encodeURIComponent(name) + '/trust').then(function (res) {
      res = res || {};
      var msg = 'Trusted ' + (res.fingerprint || 'the presented key') +
        (res.re_enabled ? ' — remote enabled again' : ' — pinned');
      finishTrust(name, msg, false);
      var poller = pollers.remotes; if (poller) setTimeout(function () { poller.tick(); }, 0);
    }, function (err) {
      finishTrust(name, 'Could not trust the host key of ' + name + ': ' + errMessage(err), true);
    });
  }

  function finishTrust(name, msg, isError) {
    var $confirm = $('#trust-confirm');
    $confirm.disabled = false;
    setText($confirm, 'Trust this key');
    trustTarget = null;
    closeTrust();
    var v = remoteViews.get(name);
    if (v) showResult(v.actionResult, msg, isError);
    announce(msg);
    focusTrustButton(name);
  }

  // ------------------------------------------------------------------ syncs

  var syncViews = new Map();

  function directionText(s) {
    var remote = (s.remote || '?') + ':' + (s.remote_path || '/');
    var folder = s.folder || '?';
    if (s.direction === 'pull') return 'pull ' + remote + ' → ' + folder;
    if (s.direction === 'two_way') return 'two-way ' + folder + ' ↔ ' + remote;
    if (s.direction === 'push') return 'push ' + folder + ' → ' + remote;
    return String(s.direction || '?') + ' ' + folder + ' / ' + remote;
  }

  function countsText(c) {
    c = c || {};
    return fmtCount(c.copied) + ' copied (' + fmtBytes(c.bytes) + '), ' + fmtCount(c.skipped) + ' skipped, ' +
      fmtCount(c.deleted) + ' deleted, ' + fmtCount(c.failed) + ' failed, ' + fmtCount(c.vanished) + ' vanished';
  }

  function runDuration(run) {
    if (!run || run.started_ms === null || run.started_ms === undefined) return null;
    var end = run.ended_ms;
    if (end === null || end === undefined) end = run.outcome === 'running' ? Date.now() : run.updated_ms;
    if (end === null || end === undefined) return null;
    return end - run.started_ms;
  }

  function outcomeWord(o) {
    if (o === 'time_limit') return 'time limit';
    return o ? String(o) : 'unknown';
  }

  function buildSync(name) {
    var v = { name: name, starting: false, rows: new Map() };
    var headingId = 'sync-' + Math.random().toString(36).slice(2, 10);
    v.article = el('article', { className: 'sync card', 'data-sync': name, 'aria-labelledby': headingId });
    v.stateBadge = el('span', { className: 'state-badge' });
    v.direction = el('dd', { className: 'sync-direction' });
    v.schedule = el('dd', { className: 'schedule' });
    v.nextRun = el('dd', { className: 'next-run' });
    v.lastRun = el('dd', { className: 'last-run' });
    v.progressBar = el('progress', { 'aria-label': 'Progress of ' + name });
    v.progressText = el('span', { className: 'progress-text' });
    v.progress = el('div', { className: 'progress' }, [v.progressBar, v.progressText]);
    v.runBtn = el('button', { type: 'button', className: 'run-sync', text: 'Run now' });
    v.runBtn.setAttribute('aria-label', 'Run ' + name + ' now');
    v.actionResult = el('p', { className: 'action-result', role: 'status' });
    v.historyBody = el('tbody');
    v.emptyRow = el('tr', { className: 'empty-row' }, [el('td', { colspan: 10, text: 'No runs yet.' })]);
    v.historyBody.appendChild(v.emptyRow);
    var cols = ['Started', 'Trigger', 'Outcome', 'Duration', 'Copied', 'Bytes', 'Skipped', 'Deleted', 'Failed', 'Vanished'];
    var numeric = { Copied: 1, Bytes: 1, Skipped: 1, Deleted: 1, Failed: 1, Vanished: 1, Duration: 1 };
    v.history = el('table', { className: 'history' }, [
      el('caption', { text: 'Recent runs of ' + name + ' (newest first)' }),
      el('thead', null, [el('tr', null, cols.map(function (c) {
        return el('th', { scope: 'col', className: numeric[c] ? 'num' : null, text: c });
      }))]),
      v.historyBody
    ]);
    v.runBtn.addEventListener('click', function () { startSync(v); });

    v.article.appendChild(el('div', { className: 'card-head' }, [el('h3', { id: headingId, text: name }), v.stateBadge]));
    v.article.appendChild(el('dl', { className: 'facts facts-wide' }, [
      el('dt', { text: 'Direction' }), v.direction,
      el('dt', { text: 'Schedule' }), v.schedule,
      el('dt', { text: 'Next run' }), v.nextRun,
      el('dt', { text: 'Last run' }), v.lastRun
    ]));
    v.article.appendChild(v.progress);
    v.article.appendChild(el('div', { className: 'actions' }, [v.runBtn]));
    v.article.appendChild(v.actionResult);
    v.article.appendChild(el('div', { className: 'table-wrap' }, [v.history]));
    return v;
  }

  function updateSync(v, s, history) {
    var running = !!s.running;
    setAttr(v.article, 'data-running', running ? 'true' : 'false');
    setText(v.stateBadge, running ? 'running' : 'idle');
    setAttr(v.stateBadge, 'data-state', running ? 'running' : 'idle');
    setText(v.direction, directionText(s));
    setText(v.schedule, s.schedule || 'manual');
    setText(v.nextRun, s.next_run ? fmtTime(s.next_run) : '—');

    var last = s.last_run;
    if (last) {
      var when = last.outcome === 'running' ? 'since ' + fmtTime(last.started_ms) : fmtTime(last.ended_ms || last.started_ms);
      setText(v.lastRun, outcomeWord(last.outcome) + ' · ' + when + ' (' + (last.trigger || '?') + ') · ' + countsText(last.counts));
      setAttr(v.lastRun, 'data-outcome', last.outcome || '');
    } else {
      setText(v.lastRun, 'never run');
      setAttr(v.lastRun, 'data-outcome', '');
    }

    setHidden(v.progress, !running);
    if (running) {
      var cur = (last && last.outcome === 'running') ? last : null;
      var c = (cur && cur.counts) || {};
      var txt = plural(Number(c.copied) || 0, 'file') + ', ' + fmtBytes(c.bytes) + ' copied';
      if (cur && cur.current_file) txt += '; now: ' + cur.current_file;
      if (cur) txt += ' · running for ' + fmtDuration(runDuration(cur));
      setText(v.progressText, txt);
    }
    v.runBtn.disabled = running || v.starting || !canOperate();
    setText(v.runBtn, v.starting ? 'Starting…' : (running ? 'Running…' : 'Run now'));
    setAttr(v.runBtn, 'aria-label', v.starting ? 'Starting ' + v.name + '…' : (running ? v.name + ' is running' : 'Run ' + v.name + ' now'));

    if (history) renderHistory(v, history);
  }

  function renderHistory(v, runs) {
    var seen = new Set();
    var ordered = [];
    runs.forEach(function (run) {
      if (!run || run.id === undefined || run.id === null) return;
      var id = String(run.id);
      seen.add(id);
      var rv = v.rows.get(id);
      if (!rv) { rv = buildRunRow(id); v.rows.set(id, rv); }
      updateRunRow(rv, run);
      ordered.push(rv.row);
      if (!rv.errorsRow.hidden) ordered.push(rv.errorsRow);
      else if (rv.errorsRow.parentNode) rv.errorsRow.remove();
    });
    v.rows.forEach(function (rv, id) {
      if (!seen.has(id)) { rv.row.remove(); rv.errorsRow.remove(); v.rows.delete(id); }
    });
    if (ordered.length === 0) ordered.push(v.emptyRow);
    else if (v.emptyRow.parentNode) v.emptyRow.remove();
    syncOrder(v.historyBody, ordered);
  }

  function buildRunRow(id) {
    var rv = { id: id, errorsKey: null };
    rv.cells = {};
    rv.row = el('tr', { className: 'run', 'data-run-id': id });
    ['started', 'trigger', 'outcome', 'duration', 'copied', 'bytes', 'skipped', 'deleted', 'failed', 'vanished'].forEach(function (k, i) {
      var cell = el(i === 0 ? 'th' : 'td', i === 0 ? { scope: 'row' } : null);
      if (i >= 3) cell.className = 'num';
      if (k === 'outcome') cell.className = 'outcome';
      rv.cells[k] = cell;
      rv.row.appendChild(cell);
    });
    rv.errorsList = el('ul', { className: 'run-errors-list' });
    rv.errorsSummary = el('summary');
    rv.details = el('details', null, [rv.errorsSummary, rv.errorsList]);
    rv.errorsRow = el('tr', { className: 'run-errors', 'data-run-id': id }, [el('td', { colspan: 10 }, [rv.details])]);
    rv.errorsRow.hidden = true;
    return rv;
  }

  function updateRunRow(rv, run) {
    var c = run.counts || {};
    setAttr(rv.row, 'data-outcome', run.outcome || '');
    setText(rv.cells.started, fmtTime(run.started_ms));
    setText(rv.cells.trigger, run.trigger || '—');
    setText(rv.cells.outcome, outcomeWord(run.outcome));
    setAttr(rv.cells.outcome, 'data-outcome', run.outcome || '');
    setText(rv.cells.duration, fmtDuration(runDuration(run)));
    setText(rv.cells.copied, fmtCount(c.copied));
    setText(rv.cells.bytes, fmtBytes(c.bytes));
    setText(rv.cells.skipped, fmtCount(c.skipped));
    setText(rv.cells.deleted, fmtCount(c.deleted));
    setText(rv.cells.failed, fmtCount(c.failed));
    setText(rv.cells.vanished, fmtCount(c.vanished));

    var errors = Array.isArray(run.errors) ? run.errors : [];
    var key = JSON.stringify(errors);
    if (key !== rv.errorsKey) {
      rv.errorsKey = key;
      rv.errorsList.textContent = '';
      errors.forEach(function (e) {
        rv.errorsList.appendChild(el('li', { className: 'run-error' }, [
          el('code', { text: e && e.path !== undefined ? String(e.path) : '?' }),
          ': ' + (e && e.message !== undefined ? String(e.message) : '')
        ]));
      });
      setText(rv.errorsSummary, plural(errors.length, 'error') + ' in the run started ' + fmtTime(run.started_ms));
      // Open short lists the first time they appear; afterwards the user's choice is kept.
      if (!rv.openedOnce && errors.length) { rv.openedOnce = true; rv.details.open = errors.length <= 5; }
    }
    rv.errorsRow.hidden = errors.length === 0;
  }

  function renderSyncs(list, histories) {
    var container = $('#syncs-list');
    var seen = new Set();
    var ordered = [];
    (list || []).forEach(function (s, i) {
      if (!s || typeof s.name !== 'string') return;
      seen.add(s.name);
      var v = syncViews.get(s.name);
      if (!v) { v = buildSync(s.name); syncViews.set(s.name, v); }
      updateSync(v, s, histories[i]);
      v.data = s;
      ordered.push(v.article);
    });
    syncViews.forEach(function (v, name) {
      if (!seen.has(name)) { v.article.remove(); syncViews.delete(name); }
    });
    syncOrder(container, ordered);
    setHidden($('#syncs-empty'), ordered.length > 0);
  }

  function pollSyncs() {
    return api('GET', '/api/v1/syncs').then(function (list) {
      list = Array.isArray(list) ? list : [];
      return Promise.all(list.map(function (s) {
        return api('GET', '/api/v1/syncs/' + encodeURIComponent(s.name) + '/history?limit=10').then(function (h) {
          return Array.isArray(h) ? h : [];
        }, function (err) {
          if (err && err.status === 401) throw err;
          return null; // keep the previous history on screen
        });
      })).then(function (histories) { renderSyncs(list, histories); });
    });
  }

  function startSync(v) {
    if (v.starting) return;
    v.starting = true;
    v.runBtn.disabled = true;
    setText(v.runBtn, 'Starting…');
    api('POST', '/api/v1/syncs/' + encodeURIComponent(v.name) + '/run').then(function (res) {
      var msg = 'Started ' + v.name + (res && res.run_id ? ' (run ' + res.run_id + ')' : '');
      showResult(v.actionResult, msg, false);
      announce(msg);
    }, function (err) {
      var msg = 'Could not start ' + v.name + ': ' + errMessage(err);
      showResult(v.actionResult, msg, true);
      announce(msg);
    }).then(function () {
      v.starting = false;
      if (v.data) updateSync(v, v.data, null);
      else { v.runBtn.disabled = false; setText(v.runBtn, 'Run now'); }
      var p = pollers.syncs; if (p) p.tick();
    });
  }

  // --------------------------------------------------------------- sessions

  var sessionRows = new Map();

  function buildSessionRow(id) {
    var s = { cells: {} };
    s.row = el('tr', { className: 'session', 'data-session-id': id });
    ['user', 'address', 'protocol', 'since', 'in', 'out', 'activity'].forEach(function (k, i) {
      var cell = el(i === 0 ? 'th' : 'td', i === 0 ? { scope: 'row' } : null);
      if (k === 'in' || k === 'out') cell.className = 'num';
      s.cells[k] = cell;
      s.row.appendChild(cell);
    });
    return s;
  }

  function renderSessions(list) {
    var body = $('#sessions-body');
    var empty = body.querySelector('tr.empty-row');
    var seen = new Set();
    var ordered = [];
    (Array.isArray(list) ? list : []).forEach(function (x) {
      if (!x || x.id === undefined || x.id === null) return;
      var id = String(x.id);
      seen.add(id);
      var s = sessionRows.get(id);
      if (!s) { s = buildSessionRow(id); sessionRows.set(id, s); }
      var authed = x.authenticated !== false;
      setText(s.cells.user, authed ? (x.user || '—') : '(logging in)');
      s.row.classList.toggle('unauthenticated', !authed);
      setText(s.cells.address, x.address || '—');
      setText(s.cells.protocol, x.protocol || '—');
      setText(s.cells.since, fmtTime(x.connected_at));
      setText(s.cells['in'], fmtBytes(x.bytes_in));
      setText(s.cells.out, fmtBytes(x.bytes_out));
      setText(s.cells.activity, x.activity || 'idle');
      ordered.push(s.row);
    });
    sessionRows.forEach(function (s, id) {
      if (!seen.has(id)) { s.row.remove(); sessionRows.delete(id); }
    });
    if (!empty) empty = el('tr', { className: 'empty-row' }, [el('td', { colspan: 7, text: 'No open sessions.' })]);
    if (ordered.length === 0) ordered.push(empty);
    else if (empty.parentNode) empty.remove();
    syncOrder(body, ordered);
    setText($('#sessions-table caption'), 'Open SSH/SFTP sessions: ' + (ordered[0] === empty ? 0 : ordered.length));
  }

  function pollSessions() {
    return api('GET', '/api/v1/sessions').then(renderSessions);
  }

  // ----------------------------------------------------------------- health

  function renderHealth(h) {
    h = h || {};
    var ready = !!h.ready;
    var status = $('#health-status');
    setText(status, ready ? 'ready' : 'not ready');
    setAttr(status, 'data-ready', ready ? 'true' : 'false');

    var reasons = Array.isArray(h.reasons) ? h.reasons : [];
    var ul = $('#health-reasons');
    var items = reasons.length ? reasons.map(String) : ['none'];
    var key = JSON.stringify(items);
    if (ul.getAttribute('data-key') !== key) {
      ul.setAttribute('data-key', key);
      ul.textContent = '';
      items.forEach(function (r) { ul.appendChild(el('li', { text: r })); });
    }

    var ss = h.state_store || {};
    var store = $('#health-state-store');
    setText(store, (ss.ok ? 'ok' : 'FAILING') + (ss.detail ? ' — ' + ss.detail : ''));
    setAttr(store, 'data-ok', ss.ok ? 'true' : 'false');

    var dis = Array.isArray(h.remotes_disabled) ? h.remotes_disabled : [];
    setText($('#health-disabled-remotes'), dis.length ? dis.join(', ') : 'none');
    if (h.version) setText($('#health-version'), h.version);

    var cluster = h.cluster;
    var summary = $('#cluster-summary');
    var table = $('#cluster-nodes-table');
    var single = $('#cluster-single');
    var cerr = $('#cluster-error');
    if (!cluster) {
      setHidden(single, false);
      setHidden(table, true);
      setHidden(summary, true);
      setHidden(cerr, true);
      return;
    }
    setHidden(single, true);
    var nodes = Array.isArray(cluster.nodes) ? cluster.nodes : [];
    var alive = nodes.filter(function (n) { return n && n.alive; }).length;
    setText(summary, 'Database ' + (cluster.database || '?') + ' · ' + plural(nodes.length, 'node') + ', ' + alive + ' alive');
    setHidden(summary, false);
    setText(cerr, cluster.error ? 'Cluster error: ' + cluster.error : '');
    setHidden(cerr, !cluster.error);
    setHidden(table, false);
    var body = $('#cluster-nodes-body');
    var nkey = JSON.stringify(nodes);
    if (body.getAttribute('data-key') === nkey) return;
    body.setAttribute('data-key', nkey);
    body.textContent = '';
    if (!nodes.length) body.appendChild(el('tr', { className: 'empty-row' }, [el('td', { colspan: 5, text: 'No nodes registered.' })]));
    nodes.forEach(function (n) {
      n = n || {};
      var secs = Number(n.seen_secs_ago);
      body.appendChild(el('tr', { className: 'node', 'data-node': n.node !== undefined ? String(n.node) : '', 'data-alive': n.alive ? 'true' : 'false' }, [
        el('th', { scope: 'row', text: n.node !== undefined ? String(n.node) : '—' }),
        el('td', { text: n.host || '—' }),
        el('td', { className: 'num', text: n.pid !== undefined && n.pid !== null ? String(n.pid) : '—' }),
        el('td', { text: isNaN(secs) ? '—' : fmtDuration(secs * 1000) + ' ago' }),
        el('td', { className: n.alive ? 'word-ok' : 'word-bad', text: n.alive ? 'alive' : 'not alive' })
      ]));
    });
  }

  function pollHealth() {
    return api('GET', '/api/v1/health').then(renderHealth);
  }

  // ----------------------------------------------------------------- routing

  var pollers = {
    remotes: new Poller('remotes', 1000, pollRemotes, 'remotes'),
    syncs: new Poller('syncs', 2000, pollSyncs, 'syncs'),
    sessions: new Poller('sessions', 2000, pollSessions, 'sessions'),
    health: new Poller('health', 5000, pollHealth, 'health')
  };
  var currentSection = null;

  function sectionFromHash() {
    var h = (location.hash || '').replace(/^#/, '');
    return SECTIONS.indexOf(h) >= 0 ? h : 'remotes';
  }

  function showSection(name, moveFocus) {
    if (name === currentSection) return;
    currentSection = name;
    SECTIONS.forEach(function (s) {
      var sec = document.getElementById(s);
      var link = document.getElementById('nav-' + s);
      if (sec) setHidden(sec, s !== name);
      if (link) {
        if (s === name) link.setAttribute('aria-current', 'page');
        else link.removeAttribute('aria-current');
      }
      if (pollers[s] && s !== name) pollers[s].stop();
    });
    // Clear a refresh error belonging to another section.
    if (pollError && pollError !== name) reportPoll(pollError, null);
    if (pollers[name]) pollers[name].start();
    document.title = 'Gateway console — ' + name.charAt(0).toUpperCase() + name.slice(1);
    if (moveFocus) {
      var h2 = document.querySelector('#' + name + ' h2');
      if (h2) { h2.setAttribute('tabindex', '-1'); h2.focus({ preventScroll: true }); }
      window.scrollTo(0, 0);
    }
  }

  function init() {
    // Cluster area: one container (#cluster-nodes) holding either the table or the
    // "single node" sentence.
    var dialog = $('#trust-dialog');
    $('#trust-cancel').addEventListener('click', function () {
      var name = trustTarget; trustTarget = null; closeTrust(); focusTrustButton(name);
    });
    $('#trust-confirm').addEventListener('click', confirmTrust);
    dialog.addEventListener('cancel', function () {
      var name = trustTarget; trustTarget = null;
      setTimeout(function () { focusTrustButton(name); }, 0);
    });

    window.addEventListener('hashchange', function () { showSection(sectionFromHash(), true); });
    showSection(sectionFromHash(), false);

    // Pause nothing on hidden tab except via the browser's own timer throttling; refresh
    // immediately when the tab becomes visible again.
    document.addEventListener('visibilitychange', function () {
      if (!document.hidden && pollers[currentSection]) pollers[currentSection].tick();
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
