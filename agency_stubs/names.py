"""In-code name, street and place lists the synthetic population is drawn from (no external data)."""

from __future__ import annotations

GIVEN_NAMES_FEMALE: tuple[str, ...] = (
    "Olivia", "Amelia", "Isla", "Ava", "Mia", "Ivy", "Lily", "Isabella", "Sophia", "Grace", "Freya", "Florence",
    "Willow", "Evie", "Poppy", "Ella", "Daisy", "Phoebe", "Sienna", "Charlotte", "Emily", "Harper", "Alice",
    "Matilda", "Elsie", "Rosie", "Aisha", "Maryam", "Fatima", "Zainab", "Amira", "Hannah", "Chloe", "Megan",
    "Jessica", "Lauren", "Rebecca", "Sarah", "Laura", "Emma", "Rachel", "Claire", "Nicola", "Michelle", "Karen",
    "Joanne", "Lisa", "Helen", "Susan", "Patricia", "Margaret", "Janet", "Sandra", "Deborah", "Tracey", "Kelly",
    "Leanne", "Danielle", "Chantelle", "Shannon", "Precious", "Blessing", "Chiamaka", "Adaeze", "Priya", "Anjali",
    "Sana", "Noor", "Agnieszka", "Katarzyna", "Ioana", "Elena", "Chloë", "Zoë", "Siobhán", "Aoife", "Niamh",
    "Mary-Jane", "Anne-Marie", "Renée",
)
GIVEN_NAMES_MALE: tuple[str, ...] = (
    "Oliver", "George", "Noah", "Arthur", "Muhammad", "Leo", "Oscar", "Harry", "Archie", "Jack", "Henry",
    "Charlie", "Freddie", "Theo", "Thomas", "Finley", "Alfie", "Isaac", "Lucas", "Jacob", "Ethan", "Joshua",
    "Daniel", "James", "William", "Samuel", "Joseph", "Adam", "Ryan", "Liam", "Connor", "Callum", "Jordan",
    "Kieran", "Lewis", "Ben", "Mark", "Paul", "Stephen", "David", "Andrew", "Michael", "Christopher", "Gary",
    "Wayne", "Darren", "Lee", "Craig", "Jason", "Shaun", "Anthony", "Kevin", "Robert", "John", "Peter", "Kwame",
    "Kofi", "Chinedu", "Emeka", "Tunde", "Ravi", "Arjun", "Imran", "Bilal", "Yusuf", "Omar", "Tomasz", "Piotr",
    "Andrei", "Mihai", "Seán", "Ciarán", "Jean-Luc", "José", "Mateo",
)
FAMILY_NAMES: tuple[str, ...] = (
    "Smith", "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson", "Thomas", "Johnson", "Roberts",
    "Robinson", "Thompson", "Wright", "Walker", "White", "Edwards", "Hughes", "Green", "Hall", "Lewis", "Harris",
    "Clarke", "Patel", "Jackson", "Wood", "Turner", "Martin", "Cooper", "Hill", "Ward", "Morris", "Moore", "Clark",
    "Lee", "King", "Baker", "Harrison", "Morgan", "Allen", "James", "Scott", "Phillips", "Watson", "Davis",
    "Parker", "Price", "Bennett", "Young", "Griffiths", "Mitchell", "Kelly", "Cook", "Carter", "Richardson",
    "Bailey", "Collins", "Bell", "Shaw", "Murphy", "Miller", "Cox", "Richards", "Khan", "Marshall", "Anderson",
    "Simpson", "Ellis", "Adams", "Singh", "Begum", "Wilkinson", "Foster", "Chapman", "Powell", "Webb", "Rogers",
    "Gray", "Mason", "Ali", "Hunt", "Hussain", "Campbell", "Matthews", "Owen", "Palmer", "Holmes", "Mills",
    "Barnes", "Knight", "Lloyd", "Butler", "Russell", "Barker", "Fisher", "Stevens", "Jenkins", "Murray",
    "Dixon", "Harvey", "Okafor", "Adeyemi", "Mensah", "Boateng", "Asante", "Nwosu", "Ahmed", "Rahman", "Chowdhury",
    "Uddin", "Mahmood", "Sharma", "Gupta", "Nowak", "Kowalski", "Wiśniewski", "Popescu", "Ionescu", "O'Brien",
    "O'Connor", "McCarthy", "MacDonald", "Smith-Jones", "Fernández", "Da Silva", "Nguyen", "Chen", "Yilmaz",
)
"""Family names of the generated population (never a name of the fixed cast)."""

STREETS: tuple[str, ...] = (
    "Albion Road", "Amhurst Road", "Balls Pond Road", "Barnabas Road", "Benthal Road", "Blackstone Estate",
    "Brooke Road", "Cazenove Road", "Chatsworth Road", "Clapton Square", "Cricketfield Road", "Dalston Lane",
    "Downs Park Road", "Elderfield Road", "Evering Road", "Forest Road", "Glenarm Road", "Graham Road",
    "Homerton High Street", "Kenninghall Road", "Kingsland Road", "Lauriston Road", "Lordship Road",
    "Mare Street", "Median Road", "Mildmay Grove", "Navarino Road", "Nightingale Road", "Northwold Road",
    "Osbaldeston Road", "Pembury Road", "Powerscroft Road", "Queensbridge Road", "Rectory Road", "Richmond Road",
    "Sandringham Road", "Shacklewell Lane", "Stamford Hill", "Stoke Newington Church Street", "Wilton Way",
    "Woodberry Down", "Well Street", "Victoria Park Road", "Urswick Road", "Tudor Grove",
)
POSTCODE_DISTRICTS: tuple[str, ...] = (
    "E2", "E5", "E8", "E9", "E10", "E15", "E17", "N1", "N4", "N15", "N16", "N17", "N19", "N22", "EC1V", "E1W",
)
"""London districts the population lives in (all valid outward codes)."""

INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
"""Letters a postcode's inward code may use."""

HOSPITALS: tuple[str, ...] = (
    "Homerton University Hospital", "Royal London Hospital", "Whittington Hospital",
    "North Middlesex University Hospital", "University College Hospital",
)
GP_PRACTICES: tuple[str, ...] = (
    "Lower Clapton Group Practice", "Sandringham Practice", "Barton House Group Practice",
    "Statham Grove Surgery", "Elsdale Street Surgery", "Well Street Surgery", "Cranwich Road Surgery",
    "The Nightingale Practice",
)
SCHOOLS_PRIMARY: tuple[str, ...] = (
    "Hollybank Primary School", "Orchard Primary School", "Millfields Community School",
    "Princess May Primary School", "Grazebrook Primary School", "Jubilee Primary School",
    "Sebright Primary School", "Rushmore Primary School",
)
SCHOOLS_SECONDARY: tuple[str, ...] = (
    "Clapton Girls' Academy", "Stoke Newington School", "Mossbourne Community Academy", "Cardinal Pole School",
    "Bridge Academy", "Haggerston School",
)
STAFF_NAMES: tuple[str, ...] = (
    "Alex Morgan", "Bianca Reid", "Carl Fielding", "Deepa Nair", "Ewan Blake", "Farah Qureshi", "Gemma Lowe",
    "Hugo Barrett", "Ines Duarte", "Jamal Wright", "Kirsty Doyle", "Leon Fraser", "Maya Goldberg", "Nadia Ivanova",
    "Owen Price", "Paula Stern", "Rhys Pugh", "Tara Kaur",
)
OFFENCES: tuple[str, ...] = (
    "Assault occasioning actual bodily harm", "Common assault", "Theft from a shop", "Burglary (dwelling)",
    "Possession with intent to supply a class A drug", "Criminal damage", "Robbery", "Harassment",
    "Possession of an offensive weapon", "Driving while disqualified", "Fraud by false representation",
)
YOUTH_OFFENCES: tuple[str, ...] = (
    "Possession of a bladed article", "Robbery", "Theft from a shop", "Common assault", "Criminal damage",
    "Possession of cannabis", "Theft of a mobile phone", "Possession with intent to supply a class A drug",
)
