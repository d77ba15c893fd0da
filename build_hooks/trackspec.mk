# trackspec.mk: build the game's music with `trackspec build` from Make (GNU Make 3.81+).
#
#   include path/to/trackspec.mk        # in the game's Makefile
#   game: music                         # the game target depends on the music
#
# `make music` runs `trackspec build` only when a spec or trackspec.toml changed since the last
# successful build (or a spec was added or deleted, or the asset index is missing); otherwise
# it does nothing. A failed build leaves the stamp alone, so the next `make` tries again.
# `make music-check` is the CI gate (exit 1 when a track is stale; writes nothing).
# Override any variable before the include line or on the command line, e.g.
#   make music TRACKSPEC=.venv/bin/trackspec TRACKSPEC_FLAGS=--model=models/tiny

# Defining targets here must not change the including Makefile's default goal.
_trackspec_default_goal := $(.DEFAULT_GOAL)

TRACKSPEC ?= trackspec
TRACKSPEC_ROOT ?= .
TRACKSPEC_FLAGS ?=
# Folders searched for *.trackspec (hidden folders are skipped), as `specs` in trackspec.toml.
TRACKSPEC_SPEC_DIRS ?= $(TRACKSPEC_ROOT)
TRACKSPEC_SPECS ?= $(shell find $(TRACKSPEC_SPEC_DIRS) -path '*/.*' -prune -o -type f -name '*.trackspec' -print 2>/dev/null | LC_ALL=C sort)
TRACKSPEC_CONFIG ?= $(TRACKSPEC_ROOT)/trackspec.toml
TRACKSPEC_INDEX ?= $(TRACKSPEC_ROOT)/assets/music/index.json
# The stamp lives in trackspec's per-machine state folder (git-ignored by trackspec itself).
TRACKSPEC_STAMP ?= $(TRACKSPEC_ROOT)/.trackspec/make.stamp
TRACKSPEC_SPEC_LIST ?= $(TRACKSPEC_ROOT)/.trackspec/make.specs

# The list of specs is rewritten only when it changes, so adding or deleting a spec (which
# changes no remaining spec's mtime) still makes the stamp stale.
_trackspec_list_now := $(shell mkdir -p $(dir $(TRACKSPEC_SPEC_LIST)) && \
  printf '%s\n' $(TRACKSPEC_SPECS) > $(TRACKSPEC_SPEC_LIST).new && \
  if cmp -s $(TRACKSPEC_SPEC_LIST).new $(TRACKSPEC_SPEC_LIST); then rm -f $(TRACKSPEC_SPEC_LIST).new; \
  else mv -f $(TRACKSPEC_SPEC_LIST).new $(TRACKSPEC_SPEC_LIST); fi)

.PHONY: music music-check music-rebuild

music: $(TRACKSPEC_STAMP)

$(TRACKSPEC_STAMP): $(TRACKSPEC_SPECS) $(TRACKSPEC_CONFIG) $(TRACKSPEC_SPEC_LIST) $(TRACKSPEC_INDEX)
	$(TRACKSPEC) build --root $(TRACKSPEC_ROOT) $(TRACKSPEC_FLAGS)
	@mkdir -p $(@D)
	@touch $@

# A missing index (deleted assets, fresh clone) is "remade" by this empty rule, which makes the
# stamp stale; an existing one is compared by mtime like any prerequisite.
$(TRACKSPEC_INDEX):

music-check:
	$(TRACKSPEC) build --check --root $(TRACKSPEC_ROOT) $(TRACKSPEC_FLAGS)

music-rebuild:
	@rm -f $(TRACKSPEC_STAMP)
	$(TRACKSPEC) build --root $(TRACKSPEC_ROOT) $(TRACKSPEC_FLAGS)
	@mkdir -p $(dir $(TRACKSPEC_STAMP))
	@touch $(TRACKSPEC_STAMP)

.DEFAULT_GOAL := $(_trackspec_default_goal)
