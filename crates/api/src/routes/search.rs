use std::collections::HashMap;

use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use chatsys_core::ports::SearchPosition;
use chatsys_core::search::Highlighter;
use chatsys_core::{ChatNumber, Message, MessageNumber, SearchQuery};

use super::messages::require_chat;
use super::{bad_path, json_page};
use crate::cursor::{Cursor, wrong_list};
use crate::error::ApiError;
use crate::extract::{Paging, Segments};
use crate::state::AppState;
use crate::views::{MessageView, SearchHitView};

/// Search a chat: the messages in which every whitespace-separated term of `q` occurs as a
/// case-insensitive substring (each character lower-cased on its own; no other folding),
/// by relevance, ties by descending number.
#[utoipa::path(
    get,
    path = "/applications/{token}/chats/{chat}/messages/search",
    tag = "messages",
    operation_id = "search_messages",
    params(crate::openapi::TokenParam, crate::openapi::ChatParam, crate::openapi::SearchParams, crate::openapi::PageParams),
    responses(
        (status = 200, description = "A page of hits", body = Vec<SearchHitView>,
            headers(("Link" = String, description = "`<URL>; rel=\"next\"` when more follow"))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn search(
    State(state): State<AppState>,
    Segments((token, chat)): Segments<(String, String)>,
    uri: Uri,
    paging: Paging,
) -> Result<Response, ApiError> {
    let chat = ChatNumber::parse(&chat).map_err(bad_path)?;
    let q = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(name, _)| name == "q")
        .map(|(_, value)| value.into_owned())
        .ok_or_else(|| ApiError::bad_request("q is required: the text to search for"))?;
    let query = SearchQuery::parse(&q).map_err(|e| ApiError::bad_request(e.0))?;
    let after = match paging.after {
        None => None,
        Some(Cursor::Search { length, number }) => {
            Some(SearchPosition { length, number: MessageNumber::new(number).map_err(|_| wrong_list())? })
        }
        Some(_) => return Err(wrong_list()),
    };
    let app = state.app_id(&token).await?;
    let index = state.search.as_ref().ok_or_else(|| {
        ApiError::unavailable("search is not available: this deployment has no search index configured")
    })?;
    require_chat(&state, app, chat).await?;

    // the whole search has a deadline: past it, 503 (the work it started is bounded too)
    let deadline = state.search_limits.timeout;
    let page = tokio::time::timeout(deadline, async {
        let started = std::time::Instant::now();
        let mut hits = index.search(app, chat, &query, after, paging.limit + 1).await?;
        metrics::histogram!("chatsys_search_duration_seconds").record(started.elapsed().as_secs_f64());
        let more = hits.len() > paging.limit as usize;
        hits.truncate(paging.limit as usize);
        let numbers: Vec<MessageNumber> = hits.iter().map(|h| h.number).collect();
        let stored: HashMap<MessageNumber, Message> =
            state.store.messages_by_number(app, chat, &numbers).await?.into_iter().map(|m| (m.number, m)).collect();
        // checking and marking up to 1,000 bodies of 10,000 characters is CPU work: off the
        // request threads
        let turn = state.highlighter_turn().await?;
        let entries = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let highlighter = Highlighter::new(&query);
            // The store is the truth: a hit whose stored body no longer matches (the index
            // has not caught up with an edit yet) is left out.
            hits.iter()
                .filter_map(|hit| {
                    let m = stored.get(&hit.number).filter(|m| query.matches(&m.body))?;
                    let view =
                        SearchHitView { message: MessageView::from(m), highlight: highlighter.highlight(&m.body) };
                    Some((view, Cursor::Search { length: hit.length, number: hit.number.get() }))
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| chatsys_core::Error::internal("search task failed").with_source(e))?;
        Ok::<_, chatsys_core::Error>((entries, more))
    })
    .await
    .map_err(|_| {
        ApiError::unavailable(format!(
            "the search took longer than {} s; try fewer or longer terms",
            deadline.as_secs_f32()
        ))
    })?;
    let (entries, more) = page?;
    Ok(json_page(&uri, entries, more, state.page_bytes))
}
