//! News within one process: every listener is called in turn, at once.

use std::sync::Mutex;

use async_trait::async_trait;
use chatsys_core::Result;
use chatsys_core::ports::{Bulletin, Listener, News};

#[derive(Default)]
pub struct InProcessBulletin {
    listeners: Mutex<Vec<Listener>>,
}

#[async_trait]
impl Bulletin for InProcessBulletin {
    async fn publish(&self, news: &[News]) -> Result<()> {
        let listeners = self.listeners.lock().expect("poisoned").clone();
        for item in news {
            for listener in &listeners {
                listener(*item);
            }
        }
        Ok(())
    }

    fn subscribe(&self, listener: Listener) {
        self.listeners.lock().expect("poisoned").push(listener);
    }
}
