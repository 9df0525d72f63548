//! Interactive claims gathering (issue 8): HTTP error paths and the browser flow.
