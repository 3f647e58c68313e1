//! The chat half's data side (NANOCHAT.md §5.1-5.2): conversations, their rendering to token ids
//! and loss masks, and the task datasets the chat stages train and evaluate on.
pub mod batches;
pub mod conversation;
pub mod render;
pub mod render_file;
pub mod sft_bestfit;
pub mod tasks;

pub use conversation::{Content, Conversation, ConversationError, Message, Part, PartKind, Role};
pub use render::{ChatRenderer, ChatTokens, RenderError, Rendered, MAX_CONVERSATION_TOKENS};
