# Shortcuts. The README's two commands (sudo ./demo.sh, sudo ./test.sh) stay the reference;
# these targets only call them and deploy/package/build.sh.
.PHONY: demo test deb rpm packages

demo:
	./demo.sh

test:
	./test.sh

# Packages go to dist/ (see deploy/package/build.sh for VERSION, DIST and the rest).
deb:
	deploy/package/build.sh deb

rpm:
	deploy/package/build.sh rpm

packages:
	deploy/package/build.sh deb rpm
