"""Klaviyo adapter: inbound parsing and outbound writes through `klaviyo-api`."""
