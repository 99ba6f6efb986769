//! Delivery orchestration: escalation chains stopped by the user's ack, scheduled sends,
//! cancellation, the scheduler killed, and the inputs refused.

mod cancellation;
mod escalation;
mod inputs;
mod scheduling;
