# Makefile rules for gpt_auth inside nginx's build (see config): cargo builds the Rust code as a
# static library against the configured tree in objs/. cargo decides what to rebuild, so the
# rule always runs it.

gpt_auth_cargo=${GPT_AUTH_CARGO:-cargo}
gpt_auth_objs=`cd $NGX_OBJS && pwd`

cat << END                                                  >> $NGX_MAKEFILE

.PHONY: $gpt_auth_lib

$gpt_auth_lib:
	NGINX_BUILD_DIR="$gpt_auth_objs" $gpt_auth_cargo rustc \\
		--manifest-path "$ngx_addon_dir/Cargo.toml" \\
		--package ngx_http_gpt_auth_module --lib --release \\
		--no-default-features --crate-type staticlib \\
		--target-dir "$gpt_auth_target"

END

if [ "$gpt_auth_link" = DYNAMIC ]; then
    cat << END                                              >> $NGX_MAKEFILE
$NGX_OBJS${ngx_dirsep}ngx_http_gpt_auth_module$ngx_modext:	$gpt_auth_lib

END
fi
