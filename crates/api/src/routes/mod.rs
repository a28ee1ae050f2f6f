//! One module per resource, one handler per verb.

pub mod applications;
pub mod chats;
pub mod events;
pub mod health;
pub mod messages;
pub mod search;

use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::cursor::Cursor;
use crate::error::ApiError;
use crate::extract::Paging;

/// A page of a list: the items as a JSON array and, when more follow, a `Link` to the next
/// page. `items` holds up to `limit + 1` items; the extra one only says that more follow.
pub(crate) fn page_response<T, V>(
    uri: &Uri,
    paging: &Paging,
    page_bytes: usize,
    mut items: Vec<T>,
    cursor_of: impl Fn(&T) -> Cursor,
) -> Response
where
    V: Serialize + for<'a> From<&'a T>,
{
    let more = items.len() > paging.limit as usize;
    items.truncate(paging.limit as usize);
    let entries = items.iter().map(|item| (V::from(item), cursor_of(item)));
    json_page(uri, entries, more, page_bytes)
}

/// A JSON array of at most `page_bytes` (but at least one item), with `Link: <…>;
/// rel="next"` when more follow (`more`, or the page was cut short by its size): the same
/// URL with every query parameter but `after`, and `after` set to the last item's cursor.
pub(crate) fn json_page<V: Serialize>(
    uri: &Uri,
    entries: impl IntoIterator<Item = (V, Cursor)>,
    mut more: bool,
    page_bytes: usize,
) -> Response {
    let mut body = Vec::with_capacity(4096);
    body.push(b'[');
    let mut last = None;
    for (view, cursor) in entries {
        let item = serde_json::to_vec(&view).expect("views serialize");
        if last.is_some() && body.len() + 1 + item.len() + 1 > page_bytes {
            more = true;
            break;
        }
        if last.is_some() {
            body.push(b',');
        }
        body.extend_from_slice(&item);
        last = Some(cursor);
    }
    body.push(b']');
    let next = last.filter(|_| more);
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(next) = next {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
            if name != "after" {
                query.append_pair(&name, &value);
            }
        }
        query.append_pair("after", &next.encode());
        let link = format!("<{}?{}>; rel=\"next\"", uri.path(), query.finish());
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    response
}

/// The JSON of a response body; serializing our own views cannot fail.
pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("views serialize")
}

pub(crate) fn bad_path(e: chatsys_core::InvalidInput) -> ApiError {
    ApiError::bad_request(e.0)
}
