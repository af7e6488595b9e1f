"""Common English words that carry no sentiment (VADER's lexicon lacks them).

Used with VADER's lexicon to tell whether a short text is English enough for
VADER to read (see :mod:`monitor.enrich.language`). Function words, the most
frequent nouns, verbs and adjectives, and social-media spellings. Words that
are just as common in another major European language ("die", "en", "la",
"de", "el", "se") are left out on purpose.
"""

from __future__ import annotations

__all__ = ["ENGLISH_COMMON"]

_WORDS = """
a about above across after afterwards again against ago ahead all almost alone along already
also although always am among an and another any anybody anymore anyone anything anyway anywhere
are aren't around as aside at away back be became because become becomes been before behind
being below beside besides between beyond both but by can can't cannot could couldn't did didn't
do does doesn't doing don't done down during each either else elsewhere enough even ever every
everybody everyone everything everywhere except far few for from further furthermore get gets
getting got gotten had hadn't has hasn't have haven't having he he'd he'll he's her here here's
hers herself him himself his how how's however i i'd i'll i'm i've if in inside instead into is
isn't it it'd it'll it's its itself just least less let let's like likely maybe me meanwhile
might mine more moreover most mostly much must mustn't my myself near nearly neither never
nevertheless next no nobody none noone nor not nothing now nowhere of off often on once one ones
only onto or other others otherwise ought our ours ourselves out outside over own per perhaps
quite rather really same several shall shan't she she'd she'll she's should shouldn't since so
some somebody someone something sometimes somewhat somewhere soon still such than that that'd
that'll that's the their theirs them themselves then there there'd there'll there's therefore
these they they'd they'll they're they've thing things this those though through throughout thus
till to together too toward towards under unless until up upon us very via was wasn't we we'd
we'll we're we've were weren't what what'd what'll what's whatever when when's whenever where
where's whereas wherever whether which while who who'd who'll who's whoever whole whom whose why
why's will with within without won't would wouldn't yet you you'd you'll you're you've your
yours yourself yourselves
ask asked asking became begin began believe bring brought build built buy bought call called
calling came change changed check come comes coming could cut decide decided did do eat eating
ate end ended explain fall feel feeling feels fell find finding found finish finished follow
following forget forgot gave give given gives giving go goes going gone grow happen happened
hear heard help helped hold hope hoped keep keeping kept know knew known knows learn learned
leave leaving left listen listening live lived living look looked looking looks lose lost made
make makes making mean means meant meet meeting met move moved moving need needed needs open
opened pay paid play played playing put read reading remember run running said saw say saying
says see seeing seem seems seen sell send sent set show showed shown sit sitting sleep sleeping
speak spend spent stand start started starting stay stayed stop stopped take taken takes taking
talk talked talking tell telling think thinking thought told took try tried trying turn turned
understand use used using wait waiting walk walked want wanted wanting wants watch watched
watching went work worked working works write writing wrote
able actually almost already bad better big black blue certain clear close cold common current
dark different early easy entire even ever exactly final fine first free full further general
good great green half hard high hot huge important large last late later little local long
low main major many new next nice old only open other own past possible probably public quick
quickly ready real recent red right round same short simple single small social special strong
sure true usual various white whole wide wrong young
act age air answer area art article back bed bit board body book boss box boy boys brother
business car care case cat center chance child children city class coffee company country couple
course court day days dinner dog door dream end evening eye eyes face fact family father film
food friend friends future game games girl girls group guy guys hair hand hands head health heart
history home hour hours house idea job kid kids kind lady land law level life light line list
lot lunch man media member men message minute minutes moment money month months morning mother
movie music name news night number office part party people person phone photo picture place
plan point police power president problem question rain reason report rest result room school
season second show side sister song sort state story street student system team thing time
times today tomorrow tonight town tv video view war water way week weekend weeks woman women
word words work world year years yesterday
monday tuesday wednesday thursday friday saturday sunday january february march april may june
july august september october november december
yes yeah yep nope ok okay oh hey hi hello please pls thanks thank thx tho lol haha hahaha omg
wtf lmao btw im dont cant wont didnt doesnt isnt wasnt ive ill youre theyre thats whats u ur
gonna wanna gotta kinda sorta ya yall y'all
"""

ENGLISH_COMMON: frozenset[str] = frozenset(_WORDS.split())
