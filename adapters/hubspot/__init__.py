"""HubSpot adapter: inbound parsing and outbound writes through `hubspot-api-client`."""
