"""The MASH referral workflow: referrals screened, rated, researched under deadlines, decided and routed."""
