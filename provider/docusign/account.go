package docusign

// Account names the DocuSign account the client calls as, "docusign:"
// followed by Config.AccountID: a stable id that is not a secret. DocuSign
// limits API calls per account (3,000 an hour), whichever integration or
// process makes them, so the reconciler keys its shared rate budget by it:
// every replica, and every provider name configured with this account,
// spends one budget.
func (c *Client) Account() string { return "docusign:" + c.cfg.AccountID }
