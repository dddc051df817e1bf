//! Areca RAID controllers.
