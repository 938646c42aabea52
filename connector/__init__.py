"""dcb-connector: real-time dynamic content blocks for Klaviyo and HubSpot."""
