// The stage's layout. A grid of equal 16:9 tiles, as large as the space allows for the number of people on the
// page (up to PAGE_SIZE a page; more go to further pages); one's own camera as a small picture-in-picture once
// anyone else is here; a spotlight (a shared screen, or the person pinned) with everyone else in a filmstrip.
// Where tiles would be too small to see (a phone, many people), the grid keeps a readable size and scrolls.
// Every tile has Pin and Full screen buttons. Videos are letterboxed in their tiles, never cropped.

const ASPECT = 16 / 9;
const GAP = 8;
/** Narrower than this, a tile's face is too small to see: the grid scrolls instead. */
const MIN_TILE_WIDTH = 150;
export const PAGE_SIZE = 25;

/**
 * `elements`: the stage, spotlight, grid and pager nodes. Returns `layout()` (call after tiles change),
 * `decorate(tile)` (adds the tile's buttons) and `state` ({ page, pages, pinned, mode }) for tests.
 */
export function setupLayout({ stage, spotlight, grid, pager, pagerStatus, prev, next }) {
  const state = { page: 0, pages: 1, pinned: null, mode: 'fit' };

  prev.onclick = () => { state.page = Math.max(0, state.page - 1); layout(); };
  next.onclick = () => { state.page = Math.min(state.pages - 1, state.page + 1); layout(); };
  if (window.ResizeObserver) new ResizeObserver(() => layout()).observe(stage);

  function pin(tile) {
    const pinned = state.pinned;
    if (pinned) unpin();
    if (pinned === tile) return layout();
    state.pinned = tile;
    tile.classList.add('pinned');
    tile.querySelector('.pin')?.setAttribute('aria-pressed', 'true');
    spotlight.prepend(tile);
    layout();
  }

  function unpin() {
    const tile = state.pinned;
    state.pinned = null;
    if (!tile) return;
    tile.classList.remove('pinned');
    tile.querySelector('.pin')?.setAttribute('aria-pressed', 'false');
    if (tile.isConnected) grid.append(tile);
  }

  /** The buttons on a tile: Pin (to the spotlight) and Full screen. */
  function decorate(tile) {
    const bar = document.createElement('div');
    bar.className = 'tile-actions';
    const pinButton = document.createElement('button');
    pinButton.type = 'button';
    pinButton.className = 'pin secondary';
    pinButton.textContent = 'Pin';
    pinButton.setAttribute('aria-pressed', 'false');
    pinButton.onclick = () => pin(tile);
    const full = document.createElement('button');
    full.type = 'button';
    full.className = 'fullscreen secondary';
    full.textContent = 'Full screen';
    full.onclick = () => (document.fullscreenElement ? document.exitFullscreen() : tile.requestFullscreen?.())?.catch?.(() => {});
    bar.append(pinButton, full);
    tile.append(bar);
    const describe = () => {
      const name = tile.querySelector('.label')?.firstChild?.textContent || 'this tile';
      pinButton.setAttribute('aria-label', `Pin ${name}`);
      full.setAttribute('aria-label', `Show ${name} full screen`);
    };
    tile.addEventListener('focusin', describe);
    tile.addEventListener('pointerenter', describe);
  }

  function layout() {
    if (state.pinned && !state.pinned.isConnected) state.pinned = null;
    const spot = spotlight.childElementCount > 0;
    stage.classList.toggle('spotlit', spot);
    const inGrid = [...grid.children].filter((t) => t.classList.contains('tile'));
    const self = inGrid.find((t) => t.classList.contains('self'));
    const others = inGrid.filter((t) => t !== self);
    // One's own camera goes small once there is someone else to look at (in the filmstrip it is one of many).
    const pip = Boolean(self) && others.length > 0 && !spot;
    if (self) self.classList.toggle('pip', pip);
    stage.classList.toggle('with-pip', pip);
    const paged = pip ? others : inGrid;
    state.pages = Math.max(1, Math.ceil(paged.length / PAGE_SIZE));
    state.page = Math.min(state.page, state.pages - 1);
    paged.forEach((t, i) => t.classList.toggle('off-page', Math.floor(i / PAGE_SIZE) !== state.page));
    pager.hidden = state.pages < 2;
    pagerStatus.textContent = `Page ${state.page + 1} of ${state.pages}`;
    prev.disabled = state.page === 0;
    next.disabled = state.page === state.pages - 1;
    if (spot) {
      state.mode = 'spotlight';
      grid.removeAttribute('style');
      return;
    }
    const count = paged.length - paged.filter((t) => t.classList.contains('off-page')).length;
    const width = grid.clientWidth;
    const height = grid.clientHeight;
    if (!count || !width || !height) return;
    let best = { columns: 1, tile: 0 };
    for (let columns = 1; columns <= count; columns++) {
      const rows = Math.ceil(count / columns);
      const tile = Math.min((width - GAP * (columns - 1)) / columns, ((height - GAP * (rows - 1)) / rows) * ASPECT);
      if (tile > best.tile) best = { columns, tile };
    }
    let { columns, tile } = best;
    state.mode = 'fit';
    if (tile < MIN_TILE_WIDTH) {
      // Too small to see: fewer, larger tiles, and the grid scrolls.
      state.mode = 'scroll';
      columns = Math.max(1, Math.min(count, Math.floor((width + GAP) / (MIN_TILE_WIDTH + GAP))));
      tile = (width - GAP * (columns - 1)) / columns;
    }
    const w = Math.floor(tile);
    const h = Math.floor(tile / ASPECT);
    grid.style.gridTemplateColumns = `repeat(${columns}, ${w}px)`;
    grid.style.gridAutoRows = `${h}px`;
    grid.style.alignContent = state.mode === 'fit' ? 'center' : 'start';
    grid.style.overflowY = state.mode === 'fit' ? 'hidden' : 'auto';
  }

  return { layout, decorate, pin, state };
}
